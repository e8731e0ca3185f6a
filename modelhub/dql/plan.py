"""Bound expressions and logical plan nodes (frozen dataclasses).

The binder turns AST paths into these typed values; :mod:`.lowering` maps
select plans onto the catalog's selection terms (the catalog writes the SQL),
the graph evaluator (:mod:`.graphs`) and the pure-Python reference evaluator
(tests/dqlref/reference.py) all read the same plan.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Union

from .patterns import LayerPattern
from .templates import TemplateSpec

class ValueType(str, Enum):
    """The type of a bound value: what it may be compared with (DYNAMIC: a hyperparameter,
    whose type each version decides). A str that prints as its value (messages show it)."""
    TEXT = "text"
    ID = "id"
    NUMBER = "number"
    TIME = "time"
    DYNAMIC = "dynamic"
    BOOL = "bool"
    NULL = "null"

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


TEXT, ID, NUMBER, TIME, DYNAMIC, BOOL, NULL = (ValueType.TEXT, ValueType.ID, ValueType.NUMBER, ValueType.TIME,
                                               ValueType.DYNAMIC, ValueType.BOOL, ValueType.NULL)


@dataclass(frozen=True)
class Prop:
    """A column of the version: name, id, parent, creation_time, seq, n_params, ..."""
    name: str
    vtype: ValueType


@dataclass(frozen=True)
class HParam:
    key: str
    vtype: ValueType = DYNAMIC


@dataclass(frozen=True)
class Metric:
    name: str
    agg: str = "latest"     # latest | max | min
    vtype: ValueType = NUMBER


@dataclass(frozen=True)
class LayerCount:
    pattern: LayerPattern
    vtype: ValueType = NUMBER


@dataclass(frozen=True)
class Const:
    value: Any
    vtype: ValueType


@dataclass(frozen=True)
class BoundRelated:
    """A value of a related version: ``m.parent.metrics["acc"]`` (the first parent, the
    version-parent join), ``m.root.name`` (the first version of m's first-parent chain) or
    ``b.name`` of the second variable of `from a, b` (relation "join", ``var`` its name)."""
    relation: str           # "parent" | "root" | "join"
    inner: "BoundValue"
    var: str | None = None  # the joined variable's name (relation "join")

    @property
    def vtype(self) -> ValueType:
        return self.inner.vtype


@dataclass(frozen=True)
class BoundAncestors:
    """Every version m descends from (all parents, transitively), nearest first: a list of ids."""
    vtype: ValueType = ID


@dataclass(frozen=True)
class BoundArith:
    left: "BoundValue"
    op: str                 # + - * /
    right: "BoundValue"
    vtype: ValueType = NUMBER


@dataclass(frozen=True)
class GroupAggregate:
    """An aggregate over the versions of a group (`count(m)`, `avg(m.metrics["acc"])` ...)."""
    func: str               # count | min | max | avg | sum
    inner: "BoundValue | None"      # None: count(m), the number of versions
    vtype: ValueType = NUMBER


BoundValue = Union[Prop, HParam, Metric, LayerCount, Const, BoundRelated, BoundAncestors, BoundArith, GroupAggregate]


@dataclass(frozen=True)
class LayerSelector:
    pattern: LayerPattern
    moves: tuple[str, ...] = ()     # "next" / "prev", applied in order

    def text(self, var: str = "m") -> str:
        return f'{var}["{self.pattern.text}"]' + "".join("." + m for m in self.moves)


@dataclass(frozen=True)
class GraphPredicate:
    id: int
    selector: LayerSelector
    template: TemplateSpec
    #: the catalog's operation names the template matches, when it has no attribute arguments:
    #: then the catalog answers the predicate in SQL; None: evaluated over the loaded graphs
    ops: tuple[str, ...] | None = None

    def text(self, var: str = "m") -> str:
        return f"{self.selector.text(var)} has {self.template.text()}"


# ---- conditions -------------------------------------------------------------------
@dataclass(frozen=True)
class Compare:
    left: BoundValue
    op: str
    right: BoundValue


@dataclass(frozen=True)
class LikeP:
    value: BoundValue
    pattern: str
    negated: bool


@dataclass(frozen=True)
class MatchesP:
    value: BoundValue
    pattern: str            # a regular expression that must match the whole text
    negated: bool


@dataclass(frozen=True)
class LineageP:
    """m is a descendant (or an ancestor) of the version REF names."""
    relation: str           # "descendant" | "ancestor"
    ref: str
    negated: bool


@dataclass(frozen=True)
class InP:
    value: BoundValue
    items: tuple[Const, ...]
    negated: bool


@dataclass(frozen=True)
class BetweenP:
    value: BoundValue
    low: BoundValue
    high: BoundValue
    negated: bool


@dataclass(frozen=True)
class GraphP:
    pred: GraphPredicate


@dataclass(frozen=True)
class AndP:
    items: tuple["BoundCond", ...]


@dataclass(frozen=True)
class OrP:
    items: tuple["BoundCond", ...]


@dataclass(frozen=True)
class NotP:
    operand: "BoundCond"


BoundCond = Union[Compare, LikeP, MatchesP, InP, BetweenP, GraphP, LineageP, AndP, OrP, NotP]


def graph_predicates(cond: BoundCond | None) -> tuple[GraphPredicate, ...]:
    if cond is None:
        return ()
    if isinstance(cond, GraphP):
        return (cond.pred,)
    if isinstance(cond, (AndP, OrP)):
        return tuple(p for c in cond.items for p in graph_predicates(c))
    if isinstance(cond, NotP):
        return graph_predicates(cond.operand)
    return ()


def conjuncts(cond: BoundCond | None) -> tuple[BoundCond, ...]:
    if cond is None:
        return ()
    return cond.items if isinstance(cond, AndP) else (cond,)


# ---- plans ------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputColumn:
    name: str
    value: BoundValue


@dataclass(frozen=True)
class SortKey:
    value: BoundValue
    descending: bool


@dataclass(frozen=True)
class AllVersions:
    pass


@dataclass(frozen=True)
class SubquerySource:
    plan: "SelectPlan"
    label: str              # 'subquery' or 'saved query "name"'


@dataclass(frozen=True)
class DerivedSource:
    """A saved slice/construct used as a source: the versions committed from its networks
    (a select reads those already committed; evaluate commits the missing ones first)."""
    plan: "SlicePlan | ConstructPlan"
    label: str              # 'saved query "name"'


@dataclass(frozen=True)
class IdsSource:
    """A source resolved to version ids by the executor (a :class:`DerivedSource` after its
    networks were derived and looked up or committed)."""
    ids: tuple[str, ...]
    label: str


Source = Union[AllVersions, SubquerySource, DerivedSource, IdsSource]


@dataclass(frozen=True)
class SelectPlan:
    var: str
    source: Source
    filter: BoundCond | None
    columns: tuple[OutputColumn, ...]
    order: tuple[SortKey, ...]
    limit: int | None
    group: tuple[BoundValue, ...] = ()      # `group by` keys (aggregate columns: GroupAggregate)
    aggregate: bool = False                 # one row per group (the whole selection when no keys)
    having: BoundCond | None = None         # which groups are kept (over aggregates and group keys)
    join_var: str | None = None             # `from a, b`: rows are pairs (a version of var, one of join_var)


@dataclass(frozen=True)
class SlicePlan:
    target: str
    rows: SelectPlan
    input: LayerSelector
    output: LayerSelector


@dataclass(frozen=True)
class InsertOp:
    target: LayerPattern
    template: TemplateSpec
    restrict: tuple[GraphPredicate, ...]    # where-clause predicates on the same pattern


@dataclass(frozen=True)
class DeleteEdgeOp:
    src: LayerPattern
    dst: LayerPattern


@dataclass(frozen=True)
class DeleteNodeOp:
    target: LayerPattern
    restrict: tuple[GraphPredicate, ...]


GraphOp = Union[InsertOp, DeleteEdgeOp, DeleteNodeOp]


@dataclass(frozen=True)
class ConstructPlan:
    target: str
    rows: SelectPlan
    ops: tuple[GraphOp, ...]


@dataclass(frozen=True)
class GridAxis:
    path: tuple[str, ...]
    values: tuple[Any, ...]
    auto: bool


@dataclass(frozen=True)
class EvaluatePlan:
    rows: SelectPlan
    grid: tuple[GridAxis, ...]
    keep_k: int | None
    keep_metric: str | None
    keep_after: int | None
    keep_per_dataset: bool
    config_name: str | None
    config_source: str | None
    query_text: str
    model: str | None = None        # `from NAME` named a model: only its versions
    latest: bool = False            # no where clause: the latest version of each model that no
                                    # evaluate committed (evaluate's own results are not sources)


@dataclass(frozen=True)
class SavePlan:
    name: str
    text: str
    inner: "QueryPlan"


QueryPlan = Union[SelectPlan, SlicePlan, ConstructPlan, EvaluatePlan]


@dataclass(frozen=True)
class ExplainPlan:
    inner: QueryPlan


StatementPlan = Union[SelectPlan, SlicePlan, ConstructPlan, EvaluatePlan, SavePlan, ExplainPlan]


def value_text(v: BoundValue, var: str) -> str:
    """A bound value as DQL text (explain output and error messages)."""
    if isinstance(v, Prop):
        return f"{var}.{v.name}"
    if isinstance(v, HParam):
        return f"{var}.hparams.{v.key}"
    if isinstance(v, Metric):
        base = f'{var}.metrics["{v.name}"]'
        return base if v.agg == "latest" else f"{v.agg}({base})"
    if isinstance(v, LayerCount):
        return f'count({var}["{v.pattern.text}"])'
    if isinstance(v, BoundRelated) and v.relation == "join":
        return value_text(v.inner, v.var)
    if isinstance(v, BoundRelated):
        return value_text(v.inner, f"{var}.{v.relation}")
    if isinstance(v, BoundAncestors):
        return f"{var}.ancestors"
    if isinstance(v, BoundArith):
        return f"({value_text(v.left, var)} {v.op} {value_text(v.right, var)})"
    if isinstance(v, GroupAggregate):
        return f"{v.func}({var if v.inner is None else value_text(v.inner, var)})"
    return repr(v.value)
