"""Run a statement against a catalog: parse -> bind -> plan -> SQL + graph evaluation."""
from __future__ import annotations

import itertools
import json
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import duckdb

from ..engine.spec import ORIGIN_EVALUATE, ORIGIN_KEY, Candidate, EvaluateSpec, KeepRule
from ..netdef.graph import Graph
from . import plan as P
from .binder import bind
from .errors import BindError, DQLSyntaxError, ExecutionError
from .explain import render
from .graphs import evaluate_predicate, load_views
from .graphops import construct_graph, slice_graph
from .parser import parse
from .result import DerivedGraph, QueryResult
from .sqlgen import GraphSets, SqlContext, compile_select
from .vocabulary import Vocabulary


def plan_text(text: str, catalog) -> P.StatementPlan:
    """Parse and bind ``text`` against ``catalog`` (no execution)."""
    stmt = parse(text)
    with catalog.read() as con, _snapshot(con) as own:
        return _bind(stmt, con, text, own)


@contextmanager
def _snapshot(con) -> Iterator[bool]:
    """One transaction around a statement's reads: the vocabulary it is bound against and the
    rows it returns come from one snapshot of the catalog (inside a write scope, whose
    transaction is already open, that transaction is the snapshot). Yields whether the
    transaction is this statement's own."""
    try:
        con.execute("BEGIN TRANSACTION")
    except duckdb.TransactionException:
        yield False     # already inside the enclosing writer's transaction
        return
    try:
        yield True
    finally:
        try:
            con.execute("ROLLBACK")     # it only read
        except duckdb.Error:
            pass


def _vocabulary_loaded(con) -> None:
    """Hook between loading the vocabulary and binding (tests interleave a commit here)."""


def _bind(stmt, con, text: str, own: bool) -> P.StatementPlan:
    """Bind against the vocabulary of the snapshot ``con`` reads. A name the vocabulary lacks may
    belong to a commit that landed while it loaded: the check is repeated on a fresh snapshot
    before the query fails (the caller's snapshot, when ``own``, is then that fresh one)."""
    try:
        vocab = Vocabulary.load(con)
        _vocabulary_loaded(con)
        return bind(stmt, vocab, text)
    except BindError as exc:
        if not (exc.unknown_name and own):
            raise       # inside a writer's transaction: there is nothing newer to see
        con.execute("ROLLBACK")
        con.execute("BEGIN TRANSACTION")
        vocab = Vocabulary.load(con)
        return bind(stmt, vocab, text)
    except RecursionError:  # pragma: no cover - the parser bounds nesting; a safety net
        raise DQLSyntaxError("the query is nested too deeply to bind; write `not not x` as x and long "
                             "chains without parentheses (docs/DQL.md, Limits)") from None


def execute(text: str, catalog, *, repo: Any = None, progress: Callable | None = None,
            storage_budget: int | None = None, backend: str | None = None,
            ray_address: str | None = None) -> QueryResult:
    """Run one DQL statement. ``repo`` is needed only to run `evaluate`; ``storage_budget``
    (bytes of materialized features), ``backend`` (local | ray) and ``ray_address``
    override the evaluate config's."""
    stmt = parse(text)
    with catalog.read() as con, _snapshot(con) as own:
        plan = _bind(stmt, con, text, own)
        if not isinstance(plan, (P.SavePlan, P.EvaluatePlan)):
            try:
                return run_plan(con, plan)
            except RecursionError:  # pragma: no cover - the parser bounds nesting; a safety net
                raise ExecutionError("the query is nested too deeply to run; write `not not x` as x and "
                                     "long chains without parentheses (docs/DQL.md, Limits)") from None
        if isinstance(plan, P.EvaluatePlan):
            spec = evaluate_spec(con, plan)
            if storage_budget is not None:
                spec = replace(spec, storage_budget=storage_budget)
            if backend is not None or ray_address is not None:
                spec = replace(spec, backend=backend or spec.backend, ray_address=ray_address or spec.ray_address)
    if isinstance(plan, P.SavePlan):
        with catalog.write() as con:
            con.execute("INSERT OR REPLACE INTO saved_queries (name, text, created_at) VALUES (?, ?, ?)",
                        [plan.name, plan.text, datetime.now()])
        return QueryResult(("saved", "text"), ((plan.name, plan.text),), kind="save",
                           text=f'saved query "{plan.name}"; use it with: select m from "{plan.name}"')
    return run_evaluate(repo, spec, progress)


def run_plan(con: duckdb.DuckDBPyConnection, plan: P.StatementPlan) -> QueryResult:
    if isinstance(plan, P.ExplainPlan):
        candidates = None
        if isinstance(plan.inner, P.EvaluatePlan):
            candidates = list(evaluate_spec(con, plan.inner).candidates)
        return QueryResult((), (), kind="explain", text=render(plan, candidates))
    if isinstance(plan, P.SelectPlan):
        return select(con, plan)
    if isinstance(plan, P.SlicePlan):
        return _derive(con, plan.rows, "slice",
                       lambda g, label: slice_graph(g, plan.input, plan.output, label))
    if isinstance(plan, P.ConstructPlan):
        return _derive(con, plan.rows, "construct", lambda g, label: construct_graph(g, plan.ops, label))
    raise ExecutionError(f"cannot run a {type(plan).__name__} here")  # pragma: no cover


# ---- select -------------------------------------------------------------------------
def resolve_graph_sets(con: duckdb.DuckDBPyConnection, plan: P.SelectPlan, sets: GraphSets) -> GraphSets:
    """Evaluate every graph predicate of ``plan`` (and nested plans) over the candidate graphs."""
    if isinstance(plan.source, P.SubquerySource):
        resolve_graph_sets(con, plan.source.plan, sets)
    preds = P.graph_predicates(plan.filter)
    if preds:
        ctx = SqlContext()
        # Only graphs of versions that pass the graph-free conjuncts are loaded and walked.
        sql = compile_select(plan, sets, ctx, "graphs")
        hashes = [r[0] for r in con.execute(sql, ctx.params).fetchall()]
        views = load_views(con, hashes)
        for pred in preds:
            sets[pred.id] = evaluate_predicate(views, pred)
    return sets


def select(con: duckdb.DuckDBPyConnection, plan: P.SelectPlan) -> QueryResult:
    sets = resolve_graph_sets(con, plan, {})
    ctx = SqlContext()
    sql = compile_select(plan, sets, ctx, "rows")
    raw = con.execute(sql, ctx.params).fetchall()
    decode = [isinstance(c.value, P.HParam) for c in plan.columns]
    rows = tuple(tuple(json.loads(v) if d and v is not None else v for v, d in zip(r, decode)) for r in raw)
    return QueryResult(tuple(c.name for c in plan.columns), rows)


def selected_ids(con: duckdb.DuckDBPyConnection, plan: P.SelectPlan) -> list[str]:
    sets = resolve_graph_sets(con, plan, {})
    ctx = SqlContext()
    return [r[0] for r in con.execute(compile_select(plan, sets, ctx, "ids"), ctx.params).fetchall()]


# ---- slice / construct ----------------------------------------------------------------
def _derive(con: duckdb.DuckDBPyConnection, rows: P.SelectPlan, operation: str,
            transform: Callable[[Graph, str], Graph]) -> QueryResult:
    ids = selected_ids(con, rows)
    found = con.execute(
        "SELECT v.id, v.model, v.seq, g.definition FROM versions v LEFT JOIN graphs g ON g.graph_hash = v.graph_hash "
        "WHERE v.id IN (SELECT unnest($ids)) ORDER BY v.model, v.seq", {"ids": ids}).fetchall()
    derived: list[DerivedGraph] = []
    out_rows: list[tuple] = []
    skipped = 0
    for vid, model, seq, definition in found:
        if definition is None:
            skipped += 1           # a state-dict-only version has no graph to cut
            continue
        graph = transform(Graph.from_json(definition), f"{model}@{seq}")
        derived.append(DerivedGraph(vid, model, seq, graph, operation))
        out_rows.append((vid, f"{model}@{seq}", len(graph.layers), graph.n_params, graph.hash))
    note = f"{len(derived)} new network(s)" + (f"; {skipped} version(s) without a graph skipped" if skipped else "")
    return QueryResult(("source_id", "source", "n_layers", "n_params", "graph_hash"), tuple(out_rows),
                       kind=operation, text=note, graphs=tuple(derived))


# ---- evaluate ---------------------------------------------------------------------------
def evaluate_sources(con: duckdb.DuckDBPyConnection, plan: P.EvaluatePlan) -> list[str]:
    """The versions an evaluate trains from: what its source and where clause select, only
    versions of the model ``from NAME`` names, and without a where clause the latest version of
    each model that no evaluate committed (so a later cycle starts from the same network, not
    from an earlier run's candidates)."""
    ids = selected_ids(con, plan.rows)
    if plan.model is None and not plan.latest:
        return ids
    rows = con.execute(
        "SELECT v.id, v.model, v.seq, h.value_json FROM versions v "
        "LEFT JOIN hparams h ON h.version_id = v.id AND h.key = $key "
        "WHERE v.id IN (SELECT unnest($ids)) ORDER BY v.model, v.seq",
        {"ids": ids, "key": ORIGIN_KEY}).fetchall()
    rows = [r for r in rows if plan.model is None or r[1] == plan.model]
    if not plan.latest:
        return [r[0] for r in rows]
    latest: dict[str, str] = {}
    for vid, model, _, origin in rows:
        if origin is None or json.loads(origin) != ORIGIN_EVALUATE:
            latest[model] = vid         # rows are in seq order: the last one wins
    return list(latest.values())


def evaluate_spec(con: duckdb.DuckDBPyConnection, plan: P.EvaluatePlan) -> EvaluateSpec:
    ids = evaluate_sources(con, plan)
    grid = [[(axis.path, v) for v in axis.values] for axis in plan.grid]
    candidates = tuple(Candidate(vid, tuple(combo)) for vid in ids for combo in itertools.product(*grid))
    base_config: dict = {}
    src = plan.config_source
    if src and src.endswith(".json") and Path(src).is_file():
        try:
            base_config = json.loads(Path(src).read_text())
        except (OSError, ValueError) as exc:
            raise ExecutionError(f"cannot read the config {src}: {exc}; fix the JSON file or the path") from None
    keep = KeepRule(plan.keep_k, plan.keep_metric, plan.keep_after) if plan.keep_k is not None else None
    return EvaluateSpec(candidates=candidates, base_config=base_config, config_source=src, keep=keep,
                        query_text=plan.query_text)


def run_evaluate(repo: Any, spec: EvaluateSpec, progress: Callable | None) -> QueryResult:
    try:
        from .. import engine
        runner = getattr(engine, "run_evaluate")
    except (ImportError, AttributeError):
        raise ExecutionError("the engine that runs `evaluate` is not available in this installation; "
                             "use `explain evaluate ...` to see the candidates") from None
    if repo is None:
        raise ExecutionError("evaluate trains models and commits results, so it needs a repository: "
                             "run it through repo.query(...) or `dlv query`")
    outcome = runner(repo, spec, progress=progress)
    if isinstance(outcome, QueryResult):
        return outcome
    rows = tuple(tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in (outcome or ()))
    cols = tuple(outcome[0].keys()) if outcome and isinstance(outcome[0], dict) else ()
    committed = tuple(getattr(outcome, "committed", ()) or ())
    return QueryResult(cols, rows, kind="evaluate", spec=spec, committed=committed,
                       text=f"evaluated {len(spec.candidates)} candidate(s), committed {len(committed)}",
                       stats=tuple(getattr(outcome, "reuse", ()) or ()))
