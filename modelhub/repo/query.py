"""`repo.query(text, commit=False)`: run DQL; optionally commit slice/construct results.

Committed networks become new versions with the source version as parent;
weights are carried over for every tensor whose layer survives in the new
network (same name and shape), new layers start from torch's initialization.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..dql import Progress, execute
from ..dql.errors import ExecutionError
from ..dql.result import QueryResult, ResultKind
from ..engine.spec import EvaluateSpec
from ..errors import GraphError
from .reads import hparams_of, load_state_dict, version_info


def run_query(repo, text: str, *, commit: bool = False, name: str | None = None,
              progress: Progress | None = None, storage_budget: int | None = None,
              backend: str | None = None, ray_address: str | None = None) -> QueryResult:
    def evaluate(spec: EvaluateSpec, progress: Progress | None) -> QueryResult:
        return run_evaluate(repo, spec, progress)

    result = execute(text, repo.catalog, evaluate=evaluate, progress=progress, storage_budget=storage_budget,
                     backend=backend, ray_address=ray_address)
    if not commit:
        return result
    if result.kind not in (ResultKind.SLICE, ResultKind.CONSTRUCT):
        raise ExecutionError(f"only slice and construct results can be committed, not {result.kind}; "
                             "drop --commit / commit=True")
    from . import commit as commit_op  # torch: only when results are committed

    new_ids: list[str] = []
    with repo.catalog.write() as con:
        for d in result.graphs:
            source_state = load_state_dict(con, repo.store, d.source_id)
            state = _carry_weights(d.graph, source_state)
            req = commit_op.build_request(
                state, name=name or f"{d.source_name}-{d.operation}",
                message=f"{d.operation} of {d.source_name}@{d.source_seq}: {' '.join(text.split())}",
                parent=d.source_id, hparams=hparams_of(con, d.source_id), graph=d.graph)
            vid = commit_op.write_commit(con, repo.store, req)
            new_ids.append(version_info(con, vid).id)
    rows = tuple(r + (vid,) for r, vid in zip(result.rows, new_ids))
    return replace(result, columns=result.columns + ("new_version",), rows=rows, committed=tuple(new_ids),
                   text=f"committed {len(new_ids)} new version(s)")


def run_evaluate(repo, spec: EvaluateSpec, progress: Progress | None) -> QueryResult:
    """Run an `evaluate` statement's spec with the engine (train, keep the best, commit) and
    show what it did as a query result: one row per candidate."""
    try:
        from .. import engine       # training code: loaded when a query trains, not for every query
    except ImportError as exc:
        raise ExecutionError(f"the engine that runs `evaluate` cannot be imported ({exc}); "
                             "use `explain evaluate ...` to see the candidates") from None
    from .engine_access import engine_access    # evaluate's view of the repository (engine/access.py)
    outcome = engine.run_evaluate(engine_access(repo), spec, progress=progress)
    rows = outcome.rows()
    return QueryResult(tuple(rows[0]) if rows else (), tuple(tuple(r.values()) for r in rows),
                       kind=ResultKind.EVALUATE, spec=spec, committed=tuple(outcome.committed),
                       text=f"evaluated {len(spec.candidates)} candidate(s), committed {len(outcome.committed)}",
                       stats=tuple(outcome.reuse))


def _carry_weights(graph, source_state) -> dict[str, Any]:
    """The new network's state dict: source tensors where names and shapes match."""
    try:
        from ..netdef import rebuild
        module = rebuild(graph)
        state = dict(module.state_dict())
    except GraphError:   # an unrebuildable graph keeps only the surviving layers' tensors
        layers = {n.name for n in graph.layers}
        return {k: v for k, v in source_state.items() if k.rsplit(".", 1)[0] in layers}
    for k, t in state.items():
        src = source_state.get(k)
        if src is not None and tuple(src.shape) == tuple(t.shape):
            state[k] = src
    return state
