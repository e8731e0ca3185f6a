"""Graph predicates evaluated over the stored graphs (read by :mod:`modelhub.catalog.selection_graphs`).

Graphs are content-addressed, so a loaded view and a predicate's answer for
a graph hash never go stale: both are cached per process (bounded LRU),
which is what keeps repeated queries in the REPL fast.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable

from ..catalog.selection_graphs import graph_structures
from . import plan as P
from .patterns import OPERATION_KINDS

_VIEW_CACHE: "OrderedDict[str, GraphView]" = OrderedDict()
_ANSWER_CACHE: "OrderedDict[tuple, tuple[int, ...]]" = OrderedDict()
_MAX_VIEWS = 50_000
_MAX_ANSWERS = 200_000


@dataclass(frozen=True)
class GraphView:
    names: tuple[str, ...]
    kinds: tuple[str, ...]
    ops: tuple[str, ...]
    attrs: tuple[str, ...]                  # JSON text, parsed only when a template asks for attributes
    succ: tuple[tuple[int, ...], ...]
    pred: tuple[tuple[int, ...], ...]

    def operations(self) -> Iterable[int]:
        return (i for i, k in enumerate(self.kinds) if k in OPERATION_KINDS)


def load_views(con, hashes: Iterable[str]) -> dict[str, GraphView]:
    wanted = list(dict.fromkeys(hashes))
    out: dict[str, GraphView] = {}
    missing = []
    for h in wanted:
        view = _VIEW_CACHE.get(h)
        if view is None:
            missing.append(h)
        else:
            _VIEW_CACHE.move_to_end(h)
            out[h] = view
    if missing:
        for h, structure in graph_structures(con, missing).items():
            nodes = structure.nodes
            pos = {n.idx: i for i, n in enumerate(nodes)}
            succ: list[list[int]] = [[] for _ in nodes]
            pred: list[list[int]] = [[] for _ in nodes]
            for s, d in structure.edges:
                if s in pos and d in pos:
                    succ[pos[s]].append(pos[d])
                    pred[pos[d]].append(pos[s])
            view = GraphView(tuple(n.name for n in nodes), tuple(n.kind for n in nodes), tuple(n.op for n in nodes),
                             tuple(n.attrs for n in nodes), tuple(map(tuple, succ)), tuple(map(tuple, pred)))
            out[h] = view
            _VIEW_CACHE[h] = view
            if len(_VIEW_CACHE) > _MAX_VIEWS:
                _VIEW_CACHE.popitem(last=False)
    return out


def satisfying_nodes(view: GraphView, selector: P.LayerSelector, template) -> tuple[int, ...]:
    """Nodes matched by the selector's pattern whose moved-to set holds a node matching the template."""
    rx = selector.pattern.compiled()
    hits = []
    for i in view.operations():
        if not rx.fullmatch(view.names[i]):
            continue
        frontier = {i}
        for move in selector.moves:
            adj = view.succ if move == "next" else view.pred
            frontier = {j for f in frontier for j in adj[f]}
        if any(template.matches(view.ops[j], view.attrs[j]) for j in frontier):
            hits.append(i)
    return tuple(hits)


def evaluate_predicate(views: dict[str, GraphView], pred: P.GraphPredicate) -> list[str]:
    """Hashes of the graphs where the predicate holds (some matched layer satisfies it)."""
    key_base = (pred.selector.pattern.regex, pred.selector.moves, pred.template)
    out = []
    for h, view in views.items():
        key = (h,) + key_base
        nodes = _ANSWER_CACHE.get(key)
        if nodes is None:
            nodes = satisfying_nodes(view, pred.selector, pred.template)
            _ANSWER_CACHE[key] = nodes
            if len(_ANSWER_CACHE) > _MAX_ANSWERS:
                _ANSWER_CACHE.popitem(last=False)
        if nodes:
            out.append(h)
    return sorted(out)


def clear_caches() -> None:
    _VIEW_CACHE.clear()
    _ANSWER_CACHE.clear()
