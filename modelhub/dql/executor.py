"""Run a statement against a catalog: parse -> bind -> plan -> catalog selection + graph evaluation.

The SQL lives in :mod:`modelhub.catalog` (the selection modules); this module decides what
to select and what to do with it. `evaluate` trains and commits, which is the caller's
business: it hands the executor an :data:`EvaluateRunner`.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Callable

from ..catalog.generation import catalog_generation
from ..catalog.saved_queries import save_query
from ..catalog.selection_cache import DerivedRelations
from ..catalog.selection import (candidate_graph_hashes, derived_versions, read_snapshot, renew_snapshot,
                                 select_ids, select_rows, version_graphs, version_hparam)
from ..engine.spec import ORIGIN_EVALUATE, ORIGIN_KEY, Candidate, EvaluateSpec, KeepRule
from ..netdef.graph import Graph
from . import plan as P
from .binder import bind
from .errors import BindError, DQLSyntaxError, ExecutionError
from .explain import render
from .graphs import evaluate_predicate, load_views
from .graphops import construct_graph, slice_graph
from .lowering import GraphSets, to_selection
from .parser import parse
from .result import DerivedGraph, QueryResult, ResultKind
from .statecache import PLANS, VOCABULARIES
from .vocabulary import Vocabulary

#: progress messages of a long statement (`evaluate`), one line each
Progress = Callable[[str], None]
#: runs an `evaluate` (trains the candidates, commits the kept ones) and says what it did;
#: supplied by the caller that owns the repository (modelhub.repo.query)
EvaluateRunner = Callable[[EvaluateSpec, "Progress | None"], QueryResult]
#: commits the networks a saved slice/construct derives (an `evaluate` from it trains versions) and
#: returns one version id per graph, in order, reusing a version already committed from the same
#: parent with the same graph; supplied by the caller that owns the repository
GraphCommitter = Callable[[tuple[DerivedGraph, ...]], list[str]]


def plan_text(text: str, catalog) -> P.StatementPlan:
    """Parse and bind ``text`` against ``catalog`` (no execution)."""
    stmt = parse(text)
    with catalog.read() as con, read_snapshot(con) as own:
        return _bind(stmt, con, text, own, _generation(con, own))[0]


def _vocabulary_loaded(con) -> None:
    """Hook between loading the vocabulary and binding (tests interleave a commit here)."""


def _bind(stmt, con, text: str, own: bool, generation: str | None = None) -> tuple[P.StatementPlan, str | None]:
    """Bind against the vocabulary of the snapshot ``con`` reads. A name the vocabulary lacks may
    belong to a commit that landed while it loaded: the check is repeated on a fresh snapshot
    before the query fails (the caller's snapshot, when ``own``, is then that fresh one).

    In its own snapshot a statement reuses the vocabulary and the plan bound for the same
    catalog state (statecache.py); inside a writer's transaction it cannot, since the token
    names the state before that transaction's own writes. Returns the plan and the token of the
    state it was bound against (the snapshot's state from then on)."""
    try:
        return _bind_cached(stmt, con, text, generation, first=True), generation
    except BindError as exc:
        if not (exc.unknown_name and own):
            raise       # a misuse, or inside a writer's transaction: there is nothing newer to see
        renew_snapshot(con)
        generation = _generation(con, own)
        return _bind_cached(stmt, con, text, generation, first=False), generation
    except RecursionError:  # pragma: no cover - the parser bounds nesting; a safety net
        raise DQLSyntaxError("the query is nested too deeply to bind; write `not not x` as x and long "
                             "chains without parentheses (docs/DQL.md, Limits)") from None


def _generation(con, own: bool) -> str | None:
    """The token of the state a statement's own snapshot reads (None inside a writer's transaction,
    where it would name the state before that transaction's writes, or when there is none)."""
    return catalog_generation(con) if own else None


def _bind_cached(stmt, con, text: str, generation: str | None, *, first: bool) -> P.StatementPlan:
    """Bind, reusing the vocabulary and plan of state ``generation`` when there is one;
    ``first``: the first attempt (the test hook runs between vocabulary and binding)."""
    def bind_fresh() -> P.StatementPlan:
        vocab = (Vocabulary.load(con) if generation is None
                 else VOCABULARIES.get_or_make(generation, lambda: Vocabulary.load(con)))
        if first:
            _vocabulary_loaded(con)
        return bind(stmt, vocab, text)
    if generation is None:
        return bind_fresh()
    return PLANS.get_or_make((generation, text), bind_fresh)


def execute(text: str, catalog, *, evaluate: EvaluateRunner | None = None, progress: Progress | None = None,
            storage_budget: int | None = None, backend: str | None = None,
            ray_address: str | None = None, commit_graphs: GraphCommitter | None = None,
            all_or_nothing: bool = False) -> QueryResult:
    """Run one DQL statement. ``evaluate`` runs an `evaluate` statement (without one, such a
    statement is an error); ``storage_budget`` (bytes of materialized features), ``backend``
    (local | ray) and ``ray_address`` override the evaluate config's. ``commit_graphs`` commits
    the networks of a saved slice/construct an `evaluate` names as its source.
    ``all_or_nothing``: a slice/construct that fails for one source version fails as a whole
    (by default that version is skipped and listed in ``result.skipped``)."""
    stmt = parse(text)
    with catalog.read() as con, read_snapshot(con) as own:
        plan, generation = _bind(stmt, con, text, own, _generation(con, own))
        if not isinstance(plan, (P.SavePlan, P.EvaluatePlan)):
            relations = DerivedRelations(con, generation) if generation is not None else None
            try:
                return run_statement(con, plan, all_or_nothing=all_or_nothing, relations=relations)
            except RecursionError:  # pragma: no cover - the parser bounds nesting; a safety net
                raise ExecutionError("the query is nested too deeply to run; write `not not x` as x and "
                                     "long chains without parentheses (docs/DQL.md, Limits)") from None
        spec = None
        if isinstance(plan, P.EvaluatePlan) and isinstance(plan.rows.source, P.DerivedSource):
            derived = derive(con, plan.rows.source.plan, all_or_nothing).graphs
        elif isinstance(plan, P.EvaluatePlan):
            spec = evaluate_spec(con, plan)
    if isinstance(plan, P.EvaluatePlan) and spec is None:
        # the source is a saved slice/construct: its networks become versions, then they are trained
        if commit_graphs is None or evaluate is None:
            raise ExecutionError("evaluate from a saved slice/construct commits its networks first, so it needs a "
                                 "repository: run it through repo.query(...) or `dlv query`")
        ids = tuple(dict.fromkeys(commit_graphs(derived))) if derived else ()
        plan = replace(plan, rows=replace(plan.rows, source=P.IdsSource(ids, plan.rows.source.label)))
        with catalog.read() as con, read_snapshot(con):
            spec = evaluate_spec(con, plan)
    if spec is not None:
        if storage_budget is not None:
            spec = replace(spec, storage_budget=storage_budget)
        if backend is not None or ray_address is not None:
            spec = replace(spec, backend=backend or spec.backend, ray_address=ray_address or spec.ray_address)
    if isinstance(plan, P.SavePlan):
        with catalog.write() as con:
            save_query(con, plan.name, plan.text, datetime.now())
        return QueryResult(("saved", "text"), ((plan.name, plan.text),), kind=ResultKind.SAVE,
                           text=f'saved query "{plan.name}"; use it with: select m from "{plan.name}"')
    if evaluate is None:
        raise ExecutionError("evaluate trains models and commits results, so it needs a repository: "
                             "run it through repo.query(...) or `dlv query`")
    return evaluate(spec, progress)


def run_statement(con, plan: P.StatementPlan, *, all_or_nothing: bool = False,
                  relations: DerivedRelations | None = None) -> QueryResult:
    """Run a bound statement that only reads (select, slice, construct, explain) on ``con``;
    ``relations``: relations kept for the catalog state ``con`` reads (catalog/selection_cache.py)."""
    if isinstance(plan, P.ExplainPlan):
        candidates = None
        if isinstance(plan.inner, P.EvaluatePlan):
            candidates = list(evaluate_spec(con, plan.inner).candidates)
        return QueryResult((), (), kind=ResultKind.EXPLAIN, text=render(plan, candidates))
    if isinstance(plan, P.SelectPlan):
        return select(con, plan, relations)
    if isinstance(plan, (P.SlicePlan, P.ConstructPlan)):
        return derive(con, plan, all_or_nothing, relations)
    raise ExecutionError(f"cannot run a {type(plan).__name__} here")  # pragma: no cover


# ---- select -------------------------------------------------------------------------
def resolve_sources(con, plan: P.SelectPlan) -> P.SelectPlan:
    """``plan`` with every saved slice/construct source (nested ones too) replaced by the versions
    already committed from its networks: a select only reads."""
    src = plan.source
    if isinstance(src, P.SubquerySource):
        inner = resolve_sources(con, src.plan)
        return plan if inner is src.plan else replace(plan, source=replace(src, plan=inner))
    if isinstance(src, P.DerivedSource):
        try:
            graphs = derive(con, src.plan, False).graphs
        except ExecutionError:      # it derives nothing here, so nothing was committed from it
            graphs = ()
        found = derived_versions(con, [(d.source_id, d.graph.hash) for d in graphs])
        ids = tuple(dict.fromkeys(found[k] for k in ((d.source_id, d.graph.hash) for d in graphs) if k in found))
        return replace(plan, source=P.IdsSource(ids, src.label))
    return plan


def resolve_graph_sets(con, plan: P.SelectPlan, sets: GraphSets,
                       relations: DerivedRelations | None = None) -> GraphSets:
    """Evaluate every graph predicate of ``plan`` (and nested plans) over the candidate graphs."""
    if isinstance(plan.source, P.SubquerySource):
        resolve_graph_sets(con, plan.source.plan, sets, relations)
    # predicates with attribute arguments; the others the catalog answers in SQL
    preds = [p for p in P.graph_predicates(plan.filter) if p.ops is None]
    if preds:
        # Only graphs of versions that pass the graph-free conjuncts are loaded and walked.
        views = load_views(con, candidate_graph_hashes(con, to_selection(plan, sets), relations))
        for pred in preds:
            sets[pred.id] = evaluate_predicate(views, pred)
    return sets


def select(con, plan: P.SelectPlan, relations: DerivedRelations | None = None) -> QueryResult:
    plan = resolve_sources(con, plan)
    rows = select_rows(con, to_selection(plan, resolve_graph_sets(con, plan, {}, relations)), relations)
    return QueryResult(tuple(c.name for c in plan.columns), tuple(rows))


def selected_ids(con, plan: P.SelectPlan, relations: DerivedRelations | None = None) -> list[str]:
    plan = resolve_sources(con, plan)
    return select_ids(con, to_selection(plan, resolve_graph_sets(con, plan, {}, relations)), relations)


# ---- slice / construct ----------------------------------------------------------------
def derive(con, plan: P.SlicePlan | P.ConstructPlan, all_or_nothing: bool,
           relations: DerivedRelations | None = None) -> QueryResult:
    """The networks a slice or construct derives, one per selected version with a graph. A version
    the surgery fails for is skipped and listed (``result.skipped``), unless ``all_or_nothing``;
    when it fails for every version, that is an error."""
    if isinstance(plan, P.SlicePlan):
        kind = ResultKind.SLICE

        def transform(g: Graph, label: str) -> Graph:
            return slice_graph(g, plan.input, plan.output, label)
    else:
        kind = ResultKind.CONSTRUCT

        def transform(g: Graph, label: str) -> Graph:
            return construct_graph(g, plan.ops, label)
    derived: list[DerivedGraph] = []
    out_rows: list[tuple] = []
    no_graph = 0
    failed: list[tuple[str, str]] = []
    for found in version_graphs(con, selected_ids(con, plan.rows, relations)):
        if found.definition is None:
            no_graph += 1           # a state-dict-only version has no graph to cut
            continue
        label = f"{found.model}@{found.seq}"
        try:
            graph = transform(Graph.from_json(found.definition), label)
        except ExecutionError as exc:
            if all_or_nothing:
                raise ExecutionError(f"{exc} (all-or-nothing: nothing was derived; without it the "
                                     "versions that fail are skipped and listed)") from None
            failed.append((label, str(exc)))
            continue
        derived.append(DerivedGraph(found.version_id, found.model, found.seq, graph, kind))
        out_rows.append((found.version_id, label, len(graph.layers), graph.n_params, graph.hash))
    if failed and not derived:      # nothing to show: the failure is the answer
        more = f" ({len(failed) - 1} other version(s) failed too)" if len(failed) > 1 else ""
        raise ExecutionError(failed[0][1] + more)
    note = f"{len(derived)} new network(s)"
    if no_graph:
        note += f"; {no_graph} version(s) without a graph skipped"
    if failed:
        note += f"; {len(failed)} version(s) skipped:" + "".join(f"\n  {msg}" for _, msg in failed)
    return QueryResult(("source_id", "source", "n_layers", "n_params", "graph_hash"), tuple(out_rows),
                       kind=kind, text=note, graphs=tuple(derived), skipped=tuple(failed))


# ---- evaluate ---------------------------------------------------------------------------
def evaluate_sources(con, plan: P.EvaluatePlan) -> list[str]:
    """The versions an evaluate trains from: what its source and where clause select, only
    versions of the model ``from NAME`` names, and without a where clause the latest version of
    each model that no evaluate committed (so a later cycle starts from the same network, not
    from an earlier run's candidates)."""
    ids = selected_ids(con, plan.rows)
    if plan.model is None and not plan.latest:
        return ids
    rows = [r for r in version_hparam(con, ids, ORIGIN_KEY) if plan.model is None or r.model == plan.model]
    if not plan.latest:
        return [r.version_id for r in rows]
    latest: dict[str, str] = {}
    for r in rows:
        if r.value != ORIGIN_EVALUATE:
            latest[r.model] = r.version_id      # rows are in seq order: the last one wins
    return list(latest.values())


def evaluate_spec(con, plan: P.EvaluatePlan) -> EvaluateSpec:
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
    keep = (KeepRule(plan.keep_k, plan.keep_metric, plan.keep_after, plan.keep_per_dataset)
            if plan.keep_k is not None else None)
    return EvaluateSpec(candidates=candidates, base_config=base_config, config_source=src, keep=keep,
                        query_text=plan.query_text)
