"""The columns `select m` shows beyond the default ones: the values the query filters and orders on.

`select m where m.metrics["acc"] > 0.9 order by m.hparams.lr` should show acc and lr next to
id, name, seq and creation_time, or the user cannot see why a version was picked or where it
sorted (issue 15). An explicit select list is the user's choice and is kept as written; this
applies only to a select of the whole model.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterator

from . import plan as P


def with_query_columns(plan: P.SelectPlan) -> P.SelectPlan:
    """``plan`` with one more column per value its filter or ordering reads (properties,
    hyperparameters, metrics, layer counts, values of a related version), in the order the
    query names them, leaving out what the columns already show."""
    shown = [c.value for c in plan.columns]      # a list: bound values need not be hashable
    names = {c.name for c in plan.columns}
    extra: list[P.OutputColumn] = []
    values = [*_condition_values(plan.filter), *(v for k in plan.order for v in _leaves(k.value))]
    for value in values:
        name = column_name(value)
        if value in shown or name in names:
            continue
        shown.append(value)
        names.add(name)
        extra.append(P.OutputColumn(name, value))
    return replace(plan, columns=plan.columns + tuple(extra)) if extra else plan


def column_name(v: P.BoundValue) -> str:
    """The name an explicit select of ``v`` gets (`select m.hparams.lr` -> ``hparams.lr``)."""
    if isinstance(v, P.Prop):
        return v.name
    if isinstance(v, P.HParam):
        return f"hparams.{v.key}"
    if isinstance(v, P.Metric):
        base = f"metrics[{v.name}]"
        return base if v.agg == "latest" else f"{v.agg}({base})"
    if isinstance(v, P.LayerCount):
        return f"count([{v.pattern.text}])"
    if isinstance(v, P.BoundRelated) and v.relation == "join":    # `from a, b`: b's values as b.X
        return f"{v.var}.{column_name(v.inner)}"
    if isinstance(v, P.BoundRelated):
        return f"{v.relation}.{column_name(v.inner)}"
    raise AssertionError(v)  # pragma: no cover - _leaves yields only the kinds above


def _condition_values(cond: P.BoundCond | None) -> Iterator[P.BoundValue]:
    if cond is None:
        return
    if isinstance(cond, (P.AndP, P.OrP)):
        for item in cond.items:
            yield from _condition_values(item)
    elif isinstance(cond, P.NotP):
        yield from _condition_values(cond.operand)
    elif isinstance(cond, P.Compare):
        yield from _leaves(cond.left)
        yield from _leaves(cond.right)
    elif isinstance(cond, (P.LikeP, P.MatchesP, P.InP)):
        yield from _leaves(cond.value)
    elif isinstance(cond, P.BetweenP):
        for v in (cond.value, cond.low, cond.high):
            yield from _leaves(v)
    # graph predicates and lineage tests name layers and versions, not values a column could show


def _leaves(v: P.BoundValue) -> Iterator[P.BoundValue]:
    """The values of ``v`` a column can show: arithmetic shows its operands; constants, the
    ancestors list and group aggregates (never in a `select m`) show nothing new."""
    if isinstance(v, P.BoundArith):
        yield from _leaves(v.left)
        yield from _leaves(v.right)
    elif isinstance(v, (P.Prop, P.HParam, P.Metric, P.LayerCount)):
        yield v
    elif isinstance(v, P.BoundRelated) and not isinstance(v.inner, P.BoundAncestors):
        yield v
