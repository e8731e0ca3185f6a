"""Repo.eval_selection: progressive evaluation of the versions a DQL select (or a list of refs) names.

The weights are read from this repository's archive, or from a remote
(``remote=NAME``) without pulling them: then the selection runs on the
remote's catalog (as `dlv search` does) and only the segments progressive
evaluation asks for are downloaded. The records always come from this
repository's datasets.
"""
from __future__ import annotations

from contextlib import ExitStack
from typing import Sequence

from ..errors import InputError
from ..progressive.fetch import BandwidthModel
from ..progressive.selection import Placement, ProgressCallback, SelectionReport
from . import hotcopy


def selected_refs(result, what: str) -> list[str]:
    """The versions of a select's result: NAME@N where it has name and seq columns, else the ids."""
    if "id" not in result.columns:
        raise InputError(f"the selection {what!r} returns no id column ({', '.join(result.columns) or 'nothing'}); "
                         "select the model variable itself, e.g. `select m where m.name == \"lenet\"`")
    cols = result.columns
    if "name" in cols and "seq" in cols:
        name, seq = cols.index("name"), cols.index("seq")
        return list(dict.fromkeys(f"{r[name]}@{r[seq]}" for r in result.rows))
    col = cols.index("id")
    return list(dict.fromkeys(str(r[col]) for r in result.rows))


def eval_selection(repo, select: str | None, refs: Sequence[str], *, data: str, remote: str | None = None,
                   split: str = "val", config: str | None = None, top_k: int = 1, compare: bool = True,
                   link_mbps: float | None = None, link_latency_ms: float = 20.0,
                   progress: ProgressCallback | None = None, snapshots: bool = False) -> SelectionReport:
    from ..dql import execute
    from ..engine.progressive_selection import evaluate_selection_progressive
    from .engine_access import engine_access

    if not select and not refs:
        raise InputError("nothing to evaluate: give version refs or a selection (--select \"select m where ...\")")
    if select and not select.lstrip().lower().startswith("select"):
        raise InputError(f"--select takes a select query, not {select.split(None, 1)[0]!r}; "
                         "e.g. --select 'select m where m.name == \"lenet\"'")
    bandwidth = None if link_mbps is None else BandwidthModel(link_latency_ms / 1000.0, link_mbps * 1e6 / 8)
    access = engine_access(repo)
    with ExitStack() as stack:
        if remote is not None:
            from ..remote.config import open_remote
            from ..remote.weights import remote_weights
            weights = stack.enter_context(remote_weights(open_remote(repo, remote)))
            catalog, placement = weights.catalog, Placement(remote=True)
        else:
            weights, catalog, placement = access, None, None
        ids = list(refs)
        if select:
            result = execute(select, catalog) if remote is not None else repo.query(select)
            ids += selected_refs(result, select)
        if not ids:
            raise InputError(f"the selection {select!r} matched no version; check it with `dlv query`")
        if placement is None:
            hot = hotcopy.enabled() and bool({weights.resolve(r) for r in ids} & repo.hot.version_ids())
            placement = Placement(remote=False, hot_copy=hot)
        return evaluate_selection_progressive(access, weights, ids, data, split=split, config=config, top_k=top_k,
                                              compare=compare, bandwidth=bandwidth, placement=placement,
                                              progress=progress, snapshots=snapshots)
