"""Bound select plans onto the catalog's selection terms (:mod:`modelhub.catalog.selection_terms`).

The catalog writes the SQL; DQL only says what to select. Graph predicates become
:class:`~modelhub.catalog.selection_terms.GraphMatch` with the hashes of the graphs where
they hold (evaluated by :mod:`.graphs`), or without any when not evaluated yet (explain).
"""
from __future__ import annotations

from ..catalog import selection_terms as T
from ..catalog.selection_sql import CompiledQuery, rows_sql
from . import plan as P

#: graph predicate id -> hashes of the graphs where it holds
GraphSets = dict[int, list[str]]


def to_selection(plan: P.SelectPlan, graph_sets: GraphSets | None = None) -> T.Selection:
    """``plan`` as a catalog selection; predicates missing from ``graph_sets`` stay unevaluated."""
    sets = graph_sets or {}
    within = None
    if isinstance(plan.source, P.SubquerySource):
        within = to_selection(plan.source.plan, sets)
    elif isinstance(plan.source, P.IdsSource):
        within = T.Selection(where=T.VersionIn(plan.source.ids, plan.source.label))
    elif isinstance(plan.source, P.DerivedSource):     # explain: not resolved
        within = T.Selection(where=T.VersionIn(None, plan.source.label))
    return T.Selection(
        columns=tuple(_value(c.value) for c in plan.columns),
        where=None if plan.filter is None else _cond(plan.filter, sets),
        order=tuple(T.SortTerm(_value(k.value), k.descending) for k in plan.order),
        limit=plan.limit, within=within, group_by=tuple(_value(g) for g in plan.group), aggregate=plan.aggregate,
        having=None if plan.having is None else _cond(plan.having, sets), join=plan.join_var is not None)


def select_sql(plan: P.SelectPlan, graph_sets: GraphSets | None = None) -> CompiledQuery:
    """The SQL the catalog runs for ``plan`` (explain shows it)."""
    return rows_sql(to_selection(plan, graph_sets))


def _value(v: P.BoundValue) -> T.Value:
    if isinstance(v, P.Prop):
        return T.VersionField(v.name)
    if isinstance(v, P.HParam):
        return T.HParamValue(v.key)
    if isinstance(v, P.Metric):
        return T.MetricValue(v.name, T.Aggregate(v.agg))
    if isinstance(v, P.LayerCount):
        return T.LayerCountTerm(v.pattern.sql_regex)
    if isinstance(v, P.Const):
        return T.LiteralTerm(v.value)
    if isinstance(v, P.BoundRelated):
        return T.RelatedTerm(T.Relation(v.relation), _value(v.inner))
    if isinstance(v, P.BoundAncestors):
        return T.AncestorsTerm()
    if isinstance(v, P.BoundArith):
        return T.Arithmetic(_value(v.left), v.op, _value(v.right))
    if isinstance(v, P.GroupAggregate):
        return T.Aggregated(T.VersionAggregate(v.func), None if v.inner is None else _value(v.inner))
    raise AssertionError(v)  # pragma: no cover


def _cond(c: P.BoundCond, sets: GraphSets) -> T.Condition:
    if isinstance(c, P.AndP):
        return T.AllOf(tuple(_cond(i, sets) for i in c.items))
    if isinstance(c, P.OrP):
        return T.AnyOf(tuple(_cond(i, sets) for i in c.items))
    if isinstance(c, P.NotP):
        return T.NotTerm(_cond(c.operand, sets))
    if isinstance(c, P.Compare):
        return T.ComparisonTerm(_value(c.left), T.Comparator(c.op), _value(c.right))
    if isinstance(c, P.LikeP):
        return T.LikeTerm(_value(c.value), c.pattern, c.negated)
    if isinstance(c, P.MatchesP):
        return T.MatchesTerm(_value(c.value), c.pattern, c.negated)
    if isinstance(c, P.LineageP):
        return T.LineageOf(c.relation, T.VersionRefTerm(c.ref), c.negated)
    if isinstance(c, P.InP):
        return T.InListTerm(_value(c.value), tuple(i.value for i in c.items), c.negated)
    if isinstance(c, P.BetweenP):
        return T.BetweenTerm(_value(c.value), _value(c.low), _value(c.high), c.negated)
    if isinstance(c, P.GraphP) and c.pred.ops is not None:
        sel = c.pred.selector
        return T.GraphStructureTerm(sel.pattern.sql_regex, sel.moves, c.pred.ops)
    if isinstance(c, P.GraphP):
        hashes = sets.get(c.pred.id)
        return T.GraphMatch(c.pred.id, None if hashes is None else tuple(hashes))
    raise AssertionError(c)  # pragma: no cover
