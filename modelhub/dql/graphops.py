"""`slice` and `construct`: new network definitions derived from stored graphs.

Node names are kept, so a rebuilt module's state_dict keys equal the
source's for every layer that survives — that is what lets committed
results carry the source weights over.
"""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from ..netdef.graph import OUTPUT, PLACEHOLDER, Graph, Node
from . import plan as P
from .errors import ExecutionError
from .graphs import GraphView, satisfying_nodes
from .patterns import OPERATION_KINDS, LayerPattern, substitute
from .templates import new_layer


def view_of(graph: Graph) -> GraphView:
    n = len(graph.nodes)
    succ: list[list[int]] = [[] for _ in range(n)]
    pred: list[list[int]] = [[] for _ in range(n)]
    for s, d in graph.edges():
        succ[s].append(d)
        pred[d].append(s)
    return GraphView(tuple(x.name for x in graph.nodes), tuple(x.kind for x in graph.nodes),
                     tuple(x.op for x in graph.nodes), tuple(json.dumps(x.attrs) for x in graph.nodes),
                     tuple(map(tuple, succ)), tuple(map(tuple, pred)))


def _matches(graph: Graph, pattern: LayerPattern) -> list[int]:
    return [i for i, nd in enumerate(graph.nodes) if nd.kind in OPERATION_KINDS and pattern.match(nd.name)]


def _one(graph: Graph, pattern: LayerPattern, role: str, label: str) -> int:
    hits = _matches(graph, pattern)
    if len(hits) != 1:
        found = ", ".join(graph.nodes[i].name for i in hits[:5]) or "none"
        raise ExecutionError(f'{label}: the slice {role} "{pattern.text}" must match exactly one layer, '
                             f"matched {len(hits)} ({found}); name the layer exactly")
    return hits[0]


def replace_refs(value: Any, old: str, new: str | None) -> Any:
    """Swap node references old -> new (new=None drops them from lists)."""
    if isinstance(value, dict):
        if set(value) == {"node"}:
            return {"node": new} if value["node"] == old and new is not None else value
        return {k: replace_refs(v, old, new) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [replace_refs(v, old, new) for v in value
                 if not (new is None and isinstance(v, dict) and v == {"node": old})]
        return type(value)(items)
    return value


def slice_graph(graph: Graph, input_sel: P.LayerSelector, output_sel: P.LayerSelector, label: str) -> Graph:
    start = _one(graph, input_sel.pattern, "input", label)
    end = _one(graph, output_sel.pattern, "output", label)
    view = view_of(graph)
    fwd = _reach(start, view.succ)
    back = _reach(end, view.pred)
    keep = fwd & back
    if end not in fwd:
        raise ExecutionError(f"{label}: no path leads from {graph.nodes[start].name} to {graph.nodes[end].name}; "
                             "swap input and output or pick layers on one path")
    names = {graph.nodes[i].name for i in keep}
    placeholder = _fresh("x", {n.name for n in graph.nodes})
    nodes: list[Node] = [Node(name=placeholder, kind=PLACEHOLDER, op="input")]
    for i, nd in enumerate(graph.nodes):
        if i not in keep:
            continue
        outside = [r for r in nd.inputs() if r not in names]
        if i == start:
            args = nd.args
            for r in outside:
                args = replace_refs(args, r, placeholder)
            nd = replace(nd, args=tuple(args))
        elif outside:
            raise ExecutionError(f"{label}: layer {nd.name} also reads {outside[0]}, which is outside the slice "
                                 f"from {graph.nodes[start].name}; start the slice earlier")
        nodes.append(nd)
    out_name = _fresh("output", names | {placeholder})
    nodes.append(Node(name=out_name, kind=OUTPUT, op="output", args=({"node": graph.nodes[end].name},)))
    return Graph(nodes=tuple(nodes), traced=graph.traced, rebuildable=graph.rebuildable)


def _reach(start: int, adj: tuple[tuple[int, ...], ...]) -> set[int]:
    seen, stack = {start}, [start]
    while stack:
        for j in adj[stack.pop()]:
            if j not in seen:
                seen.add(j)
                stack.append(j)
    return seen


def _fresh(base: str, taken: set[str]) -> str:
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def _targets(graph: Graph, pattern: LayerPattern, restrict: tuple[P.GraphPredicate, ...]) -> list[int]:
    hits = _matches(graph, pattern)
    if restrict:
        view = view_of(graph)
        for pred in restrict:
            ok = set(satisfying_nodes(view, pred.selector, pred.template))
            hits = [i for i in hits if i in ok]
    return hits


def construct_graph(graph: Graph, ops: tuple[P.GraphOp, ...], label: str) -> Graph:
    for op in ops:
        if isinstance(op, P.InsertOp):
            graph = _insert(graph, op, label)
        elif isinstance(op, P.DeleteNodeOp):
            graph = _delete_node(graph, op, label)
        else:
            graph = _delete_edge(graph, op, label)
    return graph


def _insert(graph: Graph, op: P.InsertOp, label: str) -> Graph:
    targets = [graph.nodes[i].name for i in _targets(graph, op.target, op.restrict)]
    if not targets:
        raise ExecutionError(f'{label}: no layer matches "{op.target.text}" here, so nothing is inserted; '
                             "check the pattern or the where clause")
    nodes = list(graph.nodes)
    for tname in targets:
        idx = next(i for i, n in enumerate(nodes) if n.name == tname)
        target = nodes[idx]
        m = op.target.match(tname)
        new_name = substitute(str(op.template.args[0]), m, op.target)
        if any(n.name == new_name for n in nodes):
            raise ExecutionError(f'{label}: a layer named "{new_name}" already exists; choose another name '
                                 f'in {op.template.name}("...")')
        layer_op, attrs, n_params, shapes = new_layer(op.template, target.op, target.attrs)
        new = Node(name=new_name, kind="call_module", op=layer_op, attrs=attrs,
                   args=({"node": tname},), n_params=n_params, param_shapes=shapes)
        nodes = [replace(n, args=tuple(replace_refs(n.args, tname, new_name))) if tname in n.inputs() else n
                 for n in nodes]
        nodes.insert(idx + 1, new)
    return Graph(nodes=tuple(nodes), traced=graph.traced, rebuildable=graph.rebuildable)


def _delete_node(graph: Graph, op: P.DeleteNodeOp, label: str) -> Graph:
    targets = [graph.nodes[i].name for i in _targets(graph, op.target, op.restrict)]
    if not targets:
        raise ExecutionError(f'{label}: no layer matches "{op.target.text}" here; nothing to delete')
    nodes = list(graph.nodes)
    for tname in targets:
        target = next(n for n in nodes if n.name == tname)
        ins = target.inputs()
        if len(ins) != 1:
            raise ExecutionError(f"{label}: {tname} has {len(ins)} inputs; only a layer with one input can be "
                                 "deleted (its consumers are rewired to that input)")
        nodes = [replace(n, args=tuple(replace_refs(n.args, tname, ins[0]))) if tname in n.inputs() else n
                 for n in nodes if n.name != tname]
    return Graph(nodes=tuple(nodes), traced=graph.traced, rebuildable=graph.rebuildable)


def _delete_edge(graph: Graph, op: P.DeleteEdgeOp, label: str) -> Graph:
    srcs = {graph.nodes[i].name for i in _matches(graph, op.src)}
    dsts = {graph.nodes[i].name for i in _matches(graph, op.dst)}
    nodes = list(graph.nodes)
    removed = 0
    for k, n in enumerate(nodes):
        if n.name not in dsts:
            continue
        for s in sorted(srcs & set(n.inputs())):
            args = replace_refs(n.args, s, None)
            n = replace(n, args=tuple(args))
            removed += 1
            if not n.inputs():
                raise ExecutionError(f"{label}: deleting the edge {s} -> {n.name} leaves {n.name} without input; "
                                     f'delete the layer instead: delete m["{n.name}"]')
        nodes[k] = n
    if not removed:
        raise ExecutionError(f'{label}: there is no edge from "{op.src.text}" to "{op.dst.text}"')
    return Graph(nodes=tuple(nodes), traced=graph.traced, rebuildable=graph.rebuildable)
