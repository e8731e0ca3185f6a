"""The DQL abstract syntax tree: frozen dataclasses, each keeping its source span.

Paths such as ``m.hparams.lr`` or ``m["conv*"].next`` stay generic here
(a root name plus attribute/subscript steps); the binder decides what they
mean, which lets it name close matches when they mean nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Union


@dataclass(frozen=True)
class Span:
    line: int
    column: int
    end_line: int
    end_column: int
    start: int = 0          # character offsets into the source text
    end: int = 0

    def __str__(self) -> str:
        return f"{self.line}:{self.column}-{self.end_line}:{self.end_column}"


LiteralValue = Union[str, int, float, bool, None]


@dataclass(frozen=True)
class Literal:
    value: LiteralValue
    span: Span


@dataclass(frozen=True)
class Attr:
    name: str
    span: Span


@dataclass(frozen=True)
class Subscript:
    key: str
    span: Span


Step = Union[Attr, Subscript]


@dataclass(frozen=True)
class Path:
    root: str
    steps: tuple[Step, ...]
    span: Span

    def text(self) -> str:
        out = self.root
        for s in self.steps:
            out += f".{s.name}" if isinstance(s, Attr) else f'["{s.key}"]'
        return out


@dataclass(frozen=True)
class Call:
    func: str
    arg: Path
    span: Span


Value = Union[Path, Call]


@dataclass(frozen=True)
class Arith:
    """``left op right`` with op one of + - * / (numbers; NULL if either side is)."""
    left: "Operand"
    op: str
    right: "Operand"
    span: Span


Operand = Union[Path, Call, Literal, Arith]


@dataclass(frozen=True)
class Template:
    name: str
    args: tuple[Literal, ...]
    kwargs: tuple[tuple[str, Literal], ...]
    span: Span

    def text(self) -> str:
        parts = [_lit_text(a.value) for a in self.args]
        parts += [f"{k}={_lit_text(v.value)}" for k, v in self.kwargs]
        return f"{self.name}({', '.join(parts)})" if parts else self.name


def _lit_text(v: LiteralValue) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)


# ---- conditions -------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    left: Operand
    op: str
    right: Operand
    span: Span


@dataclass(frozen=True)
class Like:
    operand: Operand
    pattern: str
    negated: bool
    span: Span


@dataclass(frozen=True)
class Matches:
    """``operand matches "regex"``: the whole text matches the regular expression."""
    operand: Operand
    pattern: str
    negated: bool
    span: Span


@dataclass(frozen=True)
class Lineage:
    """``m descendant of "REF"`` / ``m ancestor of "REF"`` (REF: NAME, NAME@N or an id prefix)."""
    path: Operand           # the model variable (the binder checks)
    relation: str           # "descendant" | "ancestor"
    ref: str
    negated: bool
    span: Span


@dataclass(frozen=True)
class InList:
    operand: Operand
    items: tuple[Literal, ...]
    negated: bool
    span: Span


@dataclass(frozen=True)
class Between:
    operand: Operand
    low: Operand
    high: Operand
    negated: bool
    span: Span


@dataclass(frozen=True)
class Has:
    path: Path
    template: Template
    span: Span


@dataclass(frozen=True)
class And:
    items: tuple["Condition", ...]
    span: Span


@dataclass(frozen=True)
class Or:
    items: tuple["Condition", ...]
    span: Span


@dataclass(frozen=True)
class Not:
    operand: "Condition"
    span: Span


Condition = Union[Comparison, Like, Matches, InList, Between, Has, Lineage, And, Or, Not]


# ---- sources and clauses -----------------------------------------------------------
@dataclass(frozen=True)
class SourceAll:
    """`from m1` (or no from clause): the variable ranges over every version."""
    var: str
    span: Span


@dataclass(frozen=True)
class SourceSubquery:
    query: "SelectQuery"
    alias: str | None
    span: Span


@dataclass(frozen=True)
class SourceSaved:
    name: str
    alias: str | None
    span: Span


Source = Union[SourceAll, SourceSubquery, SourceSaved]


@dataclass(frozen=True)
class SelectItem:
    value: "Operand"            # a value, or arithmetic over values and numbers
    alias: str | None
    span: Span


@dataclass(frozen=True)
class OrderItem:
    value: Value
    descending: bool
    span: Span


@dataclass(frozen=True)
class SelectQuery:
    items: tuple[SelectItem, ...]
    source: Source | None
    where: Condition | None
    order: tuple[OrderItem, ...]
    limit: int | None
    span: Span
    group: tuple[Value, ...] = ()       # `group by`: one row per group, aggregates over its versions
    having: "Condition | None" = None   # `having`: which groups are kept (over aggregates and group keys)
    join: str | None = None             # `from a, b`: the second model variable (over all versions)


@dataclass(frozen=True)
class Assignment:
    target: Path
    value: Path
    span: Span


@dataclass(frozen=True)
class SliceQuery:
    target: str
    source: Source
    where: Condition | None
    assignments: tuple[Assignment, ...]
    span: Span


@dataclass(frozen=True)
class InsertMutation:
    target: Path            # m1["conv*($1)"].insert
    template: Template
    span: Span


@dataclass(frozen=True)
class DeleteEdge:
    src: Path
    dst: Path
    span: Span


@dataclass(frozen=True)
class DeleteNode:
    path: Path
    span: Span


Mutation = Union[InsertMutation, DeleteEdge, DeleteNode]


@dataclass(frozen=True)
class ConstructQuery:
    target: str
    source: Source
    where: Condition | None
    mutations: tuple[Mutation, ...]
    span: Span


@dataclass(frozen=True)
class VaryItem:
    path: Path
    values: tuple[Literal, ...] | None      # None: `auto`, the documented default grid
    span: Span


@dataclass(frozen=True)
class KeepClause:
    k: int
    metric: Path
    after: int
    span: Span
    per: str | None = None          # `per dataset`: the top k of each dataset (default: over all)


@dataclass(frozen=True)
class WithClause:
    name: str
    source: str
    span: Span


@dataclass(frozen=True)
class EvaluateQuery:
    var: str
    source: Source
    config: WithClause | None
    where: Condition | None
    vary: tuple[VaryItem, ...]
    keep: KeepClause | None
    span: Span


Query = Union[SelectQuery, SliceQuery, ConstructQuery, EvaluateQuery]


@dataclass(frozen=True)
class Explain:
    query: Query
    span: Span


@dataclass(frozen=True)
class SaveQuery:
    name: str
    query: Query
    text: str               # the saved query's own source text
    span: Span


Statement = Union[SelectQuery, SliceQuery, ConstructQuery, EvaluateQuery, Explain, SaveQuery]


def dump(node: object, indent: int = 0) -> str:
    """A stable, readable rendering of an AST (used by golden files)."""
    pad = "  " * indent
    if isinstance(node, tuple):
        if not node:
            return pad + "[]"
        return "\n".join(dump(n, indent) for n in node)
    if not is_dataclass(node):
        return pad + repr(node)
    name = type(node).__name__
    span = getattr(node, "span", None)
    head = f"{pad}{name} @{span}" if span is not None else pad + name
    simple, nested = [], []
    for f in fields(node):
        if f.name == "span":
            continue
        v = getattr(node, f.name)
        if f.name == "text" and isinstance(node, SaveQuery):
            simple.append(f"text={v!r}")
        elif is_dataclass(v) or (isinstance(v, tuple) and v and any(is_dataclass(x) or isinstance(x, tuple) for x in v)):
            nested.append((f.name, v))
        else:
            simple.append(f"{f.name}={v!r}")
    lines = [head + (" " + " ".join(simple) if simple else "")]
    for fname, v in nested:
        lines.append(f"{pad}  {fname}:")
        if isinstance(v, tuple):
            for item in v:
                if isinstance(item, tuple):   # (key, Literal) kwargs
                    lines.append(f"{pad}    {item[0]}=")
                    lines.append(dump(item[1], indent + 3))
                else:
                    lines.append(dump(item, indent + 2))
        else:
            lines.append(dump(v, indent + 2))
    return "\n".join(lines)
