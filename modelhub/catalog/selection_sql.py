"""A :class:`~.selection_terms.Selection` as parameterized DuckDB SQL.

User literals always travel as named parameters (``$p0``, ``$p1`` ...); the SQL text
holds only identifiers and operators chosen here. Structural graph predicates arrive
as sets of satisfying graph hashes (:class:`~.selection_terms.GraphMatch`) and become a
``list_contains`` test on the version's graph hash. ``explain`` shows this text, so it
is stable: golden files compare it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import selection_terms as T

_FIELD_SQL = {
    "name": "v.model", "id": "v.id", "parent": "par.parent_id", "creation_time": "v.created_at",
    "seq": "v.seq", "message": "v.message", "author": "v.author", "n_params": "v.n_params",
    "n_tensors": "v.n_tensors", "n_layers": "g.n_layers",
}

# NaN (a diverged run) is "no usable value": NULL for the latest value, skipped by max/min.
# DuckDB would otherwise order NaN above every number, so `> 0.65` would match it.
_AGGREGATE_SQL = {
    T.Aggregate.LATEST: "CASE WHEN isnan(arg_max(value, step)) THEN NULL ELSE arg_max(value, step) END",
    T.Aggregate.MAX: "max(value) FILTER (WHERE NOT isnan(value))",
    T.Aggregate.MIN: "min(value) FILTER (WHERE NOT isnan(value))",
}


@dataclass(frozen=True)
class CompiledQuery:
    """SQL text and the named parameters it binds."""
    sql: str
    params: dict[str, Any]


@dataclass
class _Params:
    """Parameters shared by a statement and all its nested queries (aliases share the counter,
    so every name in one statement is distinct)."""
    values: dict[str, Any] = field(default_factory=dict)
    counter: int = 0

    def param(self, value: Any) -> str:
        name = f"p{self.counter}"
        self.counter += 1
        self.values[name] = value
        return f"${name}"

    def alias(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"


def rows_sql(selection: T.Selection) -> CompiledQuery:
    """The selection's output columns (``c0, c1 ...``), in order."""
    params = _Params()
    return CompiledQuery(_compile(selection, params, "rows"), params.values)


def ids_sql(selection: T.Selection) -> CompiledQuery:
    """The ids of the selected versions, in order."""
    params = _Params()
    return CompiledQuery(_compile(selection, params, "ids"), params.values)


def graph_prefilter_sql(selection: T.Selection) -> CompiledQuery:
    """The distinct graph hashes of versions passing the conjuncts of ``where`` that hold no
    graph match: only those graphs need a structural predicate evaluated over them."""
    params = _Params()
    return CompiledQuery(_compile(selection, params, "graphs"), params.values)


class _Scope:
    """One SELECT over `versions v` with the LEFT JOINs its expressions need."""

    def __init__(self, params: _Params) -> None:
        self.params = params
        self.joins: dict[tuple, tuple[str, str]] = {}

    def join(self, key: tuple) -> str:
        if key in self.joins:
            return self.joins[key][0]
        kind = key[0]
        if kind == "graphs":
            alias, sql = "g", "LEFT JOIN graphs g ON g.graph_hash = v.graph_hash"
        elif kind == "parent":
            alias = "par"
            sql = ("LEFT JOIN (SELECT version_id, arg_min(parent_id, ord) AS parent_id FROM version_parents "
                   "GROUP BY version_id) par ON par.version_id = v.id")
        elif kind == "hparam":
            alias = self.params.alias("hp")
            sql = (f"LEFT JOIN (SELECT version_id, value_json, value_num, value_str FROM hparams "
                   f"WHERE key = {self.params.param(key[1])}) {alias} ON {alias}.version_id = v.id")
        elif kind == "metric":
            alias = self.params.alias("mt")
            sql = (f"LEFT JOIN (SELECT version_id, {_AGGREGATE_SQL[key[2]]} AS val FROM metrics WHERE name = "
                   f"{self.params.param(key[1])} GROUP BY version_id) {alias} ON {alias}.version_id = v.id")
        elif kind == "count":
            alias = self.params.alias("lc")
            sql = (f"LEFT JOIN (SELECT graph_hash, count(*) AS c FROM graph_nodes WHERE "
                   f"list_contains({self.params.param(list(T.OPERATION_KINDS))}, kind) AND "
                   f"regexp_full_match(name, {self.params.param(key[1])}) GROUP BY graph_hash) {alias} "
                   f"ON {alias}.graph_hash = v.graph_hash")
        else:  # pragma: no cover
            raise AssertionError(kind)
        self.joins[key] = (alias, sql)
        return alias

    # -- values ---------------------------------------------------------------------
    def value(self, v: T.Value, hparam_as: str = "value_json") -> str:
        if isinstance(v, T.VersionField):
            if v.name == "parent":
                self.join(("parent",))
            if v.name == "n_layers":
                self.join(("graphs",))
            return _FIELD_SQL[v.name]
        if isinstance(v, T.HParamValue):
            return f"{self.join(('hparam', v.key))}.{hparam_as}"
        if isinstance(v, T.MetricValue):
            return f"{self.join(('metric', v.name, T.Aggregate(v.aggregate)))}.val"
        if isinstance(v, T.LayerCountTerm):
            alias = self.join(("count", v.name_regex))
            return f"(CASE WHEN v.graph_hash IS NULL THEN NULL ELSE coalesce({alias}.c, 0) END)"
        if isinstance(v, T.LiteralTerm):
            return self.params.param(v.value)
        raise AssertionError(v)  # pragma: no cover

    def sort_terms(self, v: T.Value) -> list[str]:
        if isinstance(v, T.HParamValue):    # numbers first by value, then strings
            return [self.value(v, "value_num"), self.value(v, "value_str")]
        return [self.value(v)]

    # -- conditions -----------------------------------------------------------------
    def cond(self, c: T.Condition) -> str:
        if isinstance(c, T.AllOf):
            return _balanced("AND", [self.cond(i) for i in c.items])
        if isinstance(c, T.AnyOf):
            return _balanced("OR", [self.cond(i) for i in c.items])
        if isinstance(c, T.NotTerm):
            return f"(NOT {self.cond(c.operand)})"
        if isinstance(c, T.ComparisonTerm):
            return self.compare(c.left, T.Comparator(c.op), c.right)
        if isinstance(c, T.LikeTerm):
            col = self.value(c.value, "value_str")
            # `\` escapes % and _ (docs/DQL.md); the escape character is ours, not the user's
            return f"({col} {'NOT LIKE' if c.negated else 'LIKE'} {self.params.param(c.pattern)} ESCAPE '\\')"
        if isinstance(c, T.InListTerm):
            inner = self.in_list(c.value, c.items)
            return f"(NOT {inner})" if c.negated else inner
        if isinstance(c, T.BetweenTerm):
            inner = (f"{self.compare(c.value, T.Comparator.GE, c.low)} AND "
                     f"{self.compare(c.value, T.Comparator.LE, c.high)}")
            return f"(NOT ({inner}))" if c.negated else f"({inner})"
        if isinstance(c, T.GraphMatch):
            hashes = list(c.graph_hashes) if c.graph_hashes is not None else None
            ref = self.params.param(hashes if hashes is not None else f"<graphs satisfying #{c.predicate_id}>")
            return f"(CASE WHEN v.graph_hash IS NULL THEN NULL ELSE list_contains({ref}, v.graph_hash) END)"
        raise AssertionError(c)  # pragma: no cover

    def in_list(self, left: T.Value, items: tuple[Any, ...]) -> str:
        """`left in [items]` with the values bound as one list parameter, however many there are:
        true if some item equals left, NULL if left is NULL (as the chain of == it stands for)."""
        tests: list[str] = []
        if any(i is None for i in items):
            tests.append(self.compare(left, T.Comparator.EQ, T.LiteralTerm(None)))
        values = [i for i in items if i is not None]
        if values:
            if isinstance(left, T.HParamValue):
                if isinstance(values[0], bool):
                    col, values = self.value(left, "value_json"), ["true" if v else "false" for v in values]
                else:
                    col = self.value(left, "value_str" if isinstance(values[0], str) else "value_num")
            else:
                col = self.value(left)
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) \
                    and any(isinstance(v, float) for v in values):
                values = [float(v) for v in values]     # one element type for the list parameter
            ref = self.params.param(values)
            kind = left.kind if isinstance(left, T.VersionField) else T.FieldKind.PLAIN
            if kind is T.FieldKind.ID:      # ids match by unique prefix, like ==
                tests.append(f"(CASE WHEN {col} IS NULL THEN NULL ELSE "
                             f"EXISTS (SELECT 1 FROM unnest({ref}) AS u(x) WHERE starts_with({col}, u.x)) END)")
            elif kind is T.FieldKind.TIME:
                tests.append(f"({col} IN (SELECT CAST(unnest({ref}) AS TIMESTAMP)))")
            else:
                tests.append(f"({col} IN (SELECT unnest({ref})))")
        return tests[0] if len(tests) == 1 else "(" + " OR ".join(tests) + ")"

    def compare(self, left: T.Value, op: T.Comparator, right: T.Value) -> str:
        sql_op = {T.Comparator.NE: "<>", T.Comparator.EQ: "="}.get(op, op.value)
        if isinstance(right, T.LiteralTerm):
            val = right.value
            if val is None:
                col = self.value(left)
                return f"({col} IS {'NOT ' if op is T.Comparator.NE else ''}NULL)"
            if isinstance(left, T.HParamValue):
                if isinstance(val, bool):
                    return f"({self.value(left, 'value_json')} {sql_op} {self.params.param('true' if val else 'false')})"
                column = "value_str" if isinstance(val, str) else "value_num"
                return f"({self.value(left, column)} {sql_op} {self.params.param(val)})"
            col = self.value(left)
            kind = left.kind if isinstance(left, T.VersionField) else T.FieldKind.PLAIN
            if kind is T.FieldKind.ID and op in (T.Comparator.EQ, T.Comparator.NE):
                # ids match by unique prefix, like everywhere in dlv
                test = f"starts_with({col}, {self.params.param(val)})"
                return f"({test})" if op is T.Comparator.EQ else f"(NOT {test})"
            if kind is T.FieldKind.TIME:
                return f"({col} {sql_op} CAST({self.params.param(val)} AS TIMESTAMP))"
            return f"({col} {sql_op} {self.params.param(val)})"
        return f"({self.value(left)} {sql_op} {self.value(right)})"


def _balanced(op: str, parts: list[str], fan: int = 16) -> str:
    """``(a OP b OP c ...)`` grouped into a balanced tree of parentheses: DuckDB's parser nests a
    flat chain one level per term and refuses it beyond its expression depth (~1000). Groups of
    an AND are wrapped in ``coalesce(group, NULL)`` (the same truth value, NULL included) so
    that DuckDB's filter pushdown, quadratic in the number of conjuncts (3,000 took 10 s),
    sees one conjunct per group."""
    wrap = "coalesce({}, NULL)" if op == "AND" else "{}"
    while len(parts) > fan:
        parts = [wrap.format(f"({f' {op} '.join(parts[i:i + fan])})") for i in range(0, len(parts), fan)]
    return "(" + f" {op} ".join(parts) + ")"


def _compile(sel: T.Selection, params: _Params, mode: str) -> str:
    """mode: 'rows' (output columns), 'ids' (v.id, for nesting), 'graphs' (distinct graph
    hashes passing the graph-free conjuncts: the prefilter)."""
    scope = _Scope(params)
    where: list[str] = []
    if sel.within is not None:
        where.append(f"v.id IN ({_compile(sel.within, params, 'ids')})")
    if mode == "graphs":
        where += [scope.cond(c) for c in T.conjuncts(sel.where) if not T.has_graph_match(c)]
        where.append("v.graph_hash IS NOT NULL")
        select = "SELECT DISTINCT v.graph_hash"
        order_sql = limit_sql = ""
    else:
        if sel.where is not None:
            where.append(scope.cond(sel.where))
        if mode == "ids":
            select = "SELECT v.id"
        else:
            select = "SELECT " + ", ".join(f"{scope.value(c)} AS c{i}" for i, c in enumerate(sel.columns))
        terms: list[str] = []
        for k in sel.order:
            for t in scope.sort_terms(k.value):
                terms.append(f"{t} {'DESC' if k.descending else 'ASC'} NULLS LAST")
        terms += ["v.model ASC", "v.seq ASC"]
        order_sql = " ORDER BY " + ", ".join(terms)
        limit_sql = f" LIMIT {params.param(sel.limit)}" if sel.limit is not None else ""
    joins = " ".join(sql for _, sql in scope.joins.values())
    where_sql = (" WHERE " + " AND ".join(where)) if where else ""
    return f"{select} FROM versions v{(' ' + joins) if joins else ''}{where_sql}{order_sql}{limit_sql}"
