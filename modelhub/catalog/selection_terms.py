"""The catalog's own vocabulary for selecting versions: values, conditions, a selection.

DQL's planner maps its bound plan onto these frozen dataclasses and
:mod:`.selection_sql` turns them into SQL, so the catalog never imports the
query language and the query language never writes SQL. Values are what a
version has (a column, a hyperparameter, a metric, a count of layers);
conditions combine them with SQL's three-valued logic (NULL is "unknown").
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Union

#: node kinds that are operations (placeholders and the output are not): what a layer
#: pattern selects and what a layer count counts
OPERATION_KINDS = ("call_module", "call_function", "call_method")


class _Word(str, Enum):
    """A str-valued enum that prints as its value (SQL text is built from these)."""

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


class FieldKind(_Word):
    """How a version field compares: ``ID`` fields match by unique prefix (as refs do everywhere
    in dlv), ``TIME`` fields compare with literals cast to timestamps, ``PLAIN`` ones as they are."""
    PLAIN = "plain"
    ID = "id"
    TIME = "time"


#: version fields a selection may read, and how each compares
VERSION_FIELDS: dict[str, FieldKind] = {
    "name": FieldKind.PLAIN, "id": FieldKind.ID, "parent": FieldKind.ID, "creation_time": FieldKind.TIME,
    "seq": FieldKind.PLAIN, "message": FieldKind.PLAIN, "author": FieldKind.PLAIN,
    "n_params": FieldKind.PLAIN, "n_tensors": FieldKind.PLAIN, "n_layers": FieldKind.PLAIN,
    "root": FieldKind.ID, "depth": FieldKind.PLAIN, "run_status": FieldKind.PLAIN,
}
#: version fields holding text (a hyperparameter compared with one compares as text)
TEXT_FIELDS = frozenset({"name", "id", "parent", "root", "message", "author", "run_status"})


class Aggregate(_Word):
    """Which value of a metric series stands for the version (NaN counts as no value)."""
    LATEST = "latest"
    MAX = "max"
    MIN = "min"


class VersionAggregate(_Word):
    """An aggregate over the versions of a group (NULL values are skipped; count(*) counts rows)."""
    COUNT = "count"
    MIN = "min"
    MAX = "max"
    AVG = "avg"
    SUM = "sum"


class Relation(_Word):
    """A version related to the selected one: its first ``PARENT``, the ``ROOT`` of its
    first-parent chain (itself when it has no parent), or the other version of a pair
    (``JOINED``: a selection with ``join`` ranges over pairs of versions)."""
    PARENT = "parent"
    ROOT = "root"
    JOINED = "join"


class Comparator(_Word):
    EQ = "=="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


# ---- values ---------------------------------------------------------------------------
@dataclass(frozen=True)
class VersionField:
    """A column of the version (one of :data:`VERSION_FIELDS`); ``parent`` is the first parent."""
    name: str

    @property
    def kind(self) -> FieldKind:
        return VERSION_FIELDS[self.name]


@dataclass(frozen=True)
class HParamValue:
    """A hyperparameter, stored as JSON with numeric and text projections."""
    key: str


@dataclass(frozen=True)
class MetricValue:
    name: str
    aggregate: Aggregate = Aggregate.LATEST


@dataclass(frozen=True)
class LayerCountTerm:
    """How many operation nodes of the version's graph have a name matching ``name_regex``
    (RE2, full match); NULL for a version without a graph."""
    name_regex: str


@dataclass(frozen=True)
class LiteralTerm:
    value: Any


@dataclass(frozen=True)
class RelatedTerm:
    """``value`` of the related version (the version-parent join, or the root); NULL without one."""
    relation: Relation
    value: "Value"


@dataclass(frozen=True)
class AncestorsTerm:
    """The ids of every version the version descends from (all parents, transitively),
    nearest first (ties by id); an empty list for a version without parents."""


@dataclass(frozen=True)
class Arithmetic:
    """``left op right`` over numbers (a hyperparameter by its numeric value); NULL if either
    side is NULL or on division by zero."""
    left: "Value"
    op: str         # + - * /
    right: "Value"


@dataclass(frozen=True)
class Aggregated:
    """An aggregate over a group's versions; ``value`` None with COUNT: the number of versions."""
    func: VersionAggregate
    value: "Value | None" = None


Value = Union[VersionField, HParamValue, MetricValue, LayerCountTerm, LiteralTerm, RelatedTerm, AncestorsTerm, Arithmetic, Aggregated]


# ---- conditions -----------------------------------------------------------------------
@dataclass(frozen=True)
class ComparisonTerm:
    left: Value
    op: Comparator
    right: Value


@dataclass(frozen=True)
class LikeTerm:
    """SQL LIKE with ``\\`` as the escape character; a hyperparameter matches by its text."""
    value: Value
    pattern: str
    negated: bool = False


@dataclass(frozen=True)
class MatchesTerm:
    """The value's whole text matches the regular expression ``pattern`` (RE2 syntax); a
    hyperparameter matches by its text."""
    value: Value
    pattern: str
    negated: bool = False


@dataclass(frozen=True)
class VersionRefTerm:
    """The version a ref names: ``NAME`` (its latest), ``NAME@N`` or a unique id prefix."""
    text: str


@dataclass(frozen=True)
class LineageOf:
    """The version descends from (``descendant``) or is an ancestor of (``ancestor``) the
    version ``ref`` names, through any parent; never NULL."""
    relation: str
    ref: VersionRefTerm
    negated: bool = False


@dataclass(frozen=True)
class InListTerm:
    """``value in [items]``: true if some item equals it (a None item tests for NULL)."""
    value: Value
    items: tuple[Any, ...]
    negated: bool = False


@dataclass(frozen=True)
class BetweenTerm:
    value: Value
    low: Value
    high: Value
    negated: bool = False


@dataclass(frozen=True)
class GraphMatch:
    """The version's graph is one of ``graph_hashes`` (the graphs where a structural predicate,
    evaluated outside SQL, holds). ``graph_hashes`` None: not evaluated yet (explain shows a
    placeholder naming ``predicate_id``)."""
    predicate_id: int
    graph_hashes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class GraphStructureTerm:
    """The version's graph has an operation node whose name matches ``name_regex`` (RE2, full
    match) from which following ``moves`` ("next": along edges, "prev": against them) reaches a
    node whose op is one of ``ops``; NULL for a version without a graph."""
    name_regex: str
    moves: tuple[str, ...]
    ops: tuple[str, ...]


@dataclass(frozen=True)
class VersionIn:
    """The version is one of ``version_ids`` (full ids, e.g. what a saved construct committed);
    None: not resolved yet (explain shows a placeholder naming ``label``)."""
    version_ids: tuple[str, ...] | None
    label: str = ""


@dataclass(frozen=True)
class AllOf:
    items: tuple["Condition", ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple["Condition", ...]


@dataclass(frozen=True)
class NotTerm:
    operand: "Condition"


Condition = Union[ComparisonTerm, LikeTerm, MatchesTerm, InListTerm, BetweenTerm, GraphMatch, GraphStructureTerm, VersionIn, LineageOf,
                  AllOf, AnyOf, NotTerm]


def has_graph_match(cond: Condition | None) -> bool:
    """Whether ``cond`` holds a :class:`GraphMatch` anywhere (such conditions need graphs)."""
    if cond is None:
        return False
    if isinstance(cond, GraphMatch):
        return True
    if isinstance(cond, (AllOf, AnyOf)):
        return any(has_graph_match(c) for c in cond.items)
    if isinstance(cond, NotTerm):
        return has_graph_match(cond.operand)
    return False


def conjuncts(cond: Condition | None) -> tuple[Condition, ...]:
    if cond is None:
        return ()
    return cond.items if isinstance(cond, AllOf) else (cond,)


# ---- a selection ----------------------------------------------------------------------
@dataclass(frozen=True)
class SortTerm:
    value: Value
    descending: bool = False


@dataclass(frozen=True)
class Selection:
    """Versions (of ``within``'s result when given) where ``where`` holds, ordered by ``order``
    then model and seq, at most ``limit``; each row holds ``columns``."""
    columns: tuple[Value, ...] = ()
    where: Condition | None = None
    order: tuple[SortTerm, ...] = ()
    limit: int | None = None
    within: "Selection | None" = None
    group_by: tuple[Value, ...] = ()    # with aggregate columns: one row per group
    aggregate: bool = False             # rows are groups (the whole selection when no group_by)
    having: Condition | None = None     # with aggregate: the groups kept (over aggregates and group keys)
    join: bool = False                  # rows are pairs: each version with every version (RelatedTerm JOINED)
