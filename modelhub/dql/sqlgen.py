"""Metadata predicates -> parameterized DuckDB SQL.

User literals always travel as named parameters (``$p0``, ``$p1`` ...); the
SQL text holds only identifiers and operators chosen here. Graph predicates
arrive as lists of satisfying graph hashes (computed by :mod:`.graphs`) and
become a ``list_contains`` test on the version's graph hash.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import plan as P
from .patterns import OPERATION_KINDS

#: graph id -> list of satisfying graph hashes; None renders a placeholder (explain)
GraphSets = dict[int, list[str] | None]

_PROP_SQL = {
    "name": "v.model", "id": "v.id", "parent": "par.parent_id", "creation_time": "v.created_at",
    "seq": "v.seq", "message": "v.message", "author": "v.author", "n_params": "v.n_params",
    "n_tensors": "v.n_tensors", "n_layers": "g.n_layers",
}


@dataclass
class SqlContext:
    """Parameters shared by a statement and all its nested queries."""
    params: dict[str, Any] = field(default_factory=dict)
    counter: int = 0

    def param(self, value: Any) -> str:
        name = f"p{self.counter}"
        self.counter += 1
        self.params[name] = value
        return f"${name}"

    def alias(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"


class _Scope:
    """One SELECT over `versions v` with the LEFT JOINs its expressions need."""

    def __init__(self, ctx: SqlContext, graph_sets: GraphSets) -> None:
        self.ctx = ctx
        self.graph_sets = graph_sets
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
            alias = self.ctx.alias("hp")
            sql = (f"LEFT JOIN (SELECT version_id, value_json, value_num, value_str FROM hparams "
                   f"WHERE key = {self.ctx.param(key[1])}) {alias} ON {alias}.version_id = v.id")
        elif kind == "metric":
            alias = self.ctx.alias("mt")
            # NaN (a diverged run) is "no usable value": NULL for the latest
            # value, skipped by max/min. DuckDB would otherwise order NaN above
            # every number, so `> 0.65` would match it.
            agg = {"latest": "CASE WHEN isnan(arg_max(value, step)) THEN NULL ELSE arg_max(value, step) END",
                   "max": "max(value) FILTER (WHERE NOT isnan(value))",
                   "min": "min(value) FILTER (WHERE NOT isnan(value))"}[key[2]]
            sql = (f"LEFT JOIN (SELECT version_id, {agg} AS val FROM metrics WHERE name = "
                   f"{self.ctx.param(key[1])} GROUP BY version_id) {alias} ON {alias}.version_id = v.id")
        elif kind == "count":
            alias = self.ctx.alias("lc")
            sql = (f"LEFT JOIN (SELECT graph_hash, count(*) AS c FROM graph_nodes WHERE "
                   f"list_contains({self.ctx.param(list(OPERATION_KINDS))}, kind) AND "
                   f"regexp_full_match(name, {self.ctx.param(key[1])}) GROUP BY graph_hash) {alias} "
                   f"ON {alias}.graph_hash = v.graph_hash")
        else:  # pragma: no cover
            raise AssertionError(kind)
        self.joins[key] = (alias, sql)
        return alias

    # -- values ---------------------------------------------------------------------
    def value(self, v: P.BoundValue, hparam_as: str = "value_json") -> str:
        if isinstance(v, P.Prop):
            if v.name == "parent":
                self.join(("parent",))
            if v.name == "n_layers":
                self.join(("graphs",))
            return _PROP_SQL[v.name]
        if isinstance(v, P.HParam):
            return f"{self.join(('hparam', v.key))}.{hparam_as}"
        if isinstance(v, P.Metric):
            return f"{self.join(('metric', v.name, v.agg))}.val"
        if isinstance(v, P.LayerCount):
            alias = self.join(("count", v.pattern.sql_regex))
            return f"(CASE WHEN v.graph_hash IS NULL THEN NULL ELSE coalesce({alias}.c, 0) END)"
        if isinstance(v, P.Const):
            return self.ctx.param(v.value)
        raise AssertionError(v)  # pragma: no cover

    def sort_terms(self, v: P.BoundValue) -> list[str]:
        if isinstance(v, P.HParam):    # numbers first by value, then strings
            return [self.value(v, "value_num"), self.value(v, "value_str")]
        return [self.value(v)]

    # -- conditions -----------------------------------------------------------------
    def cond(self, c: P.BoundCond) -> str:
        if isinstance(c, P.AndP):
            return _balanced("AND", [self.cond(i) for i in c.items])
        if isinstance(c, P.OrP):
            return _balanced("OR", [self.cond(i) for i in c.items])
        if isinstance(c, P.NotP):
            return f"(NOT {self.cond(c.operand)})"
        if isinstance(c, P.Compare):
            return self.compare(c.left, c.op, c.right)
        if isinstance(c, P.LikeP):
            col = self.value(c.value, "value_str")
            # `\` escapes % and _ (docs/DQL.md); the escape character is ours, not the user's
            return f"({col} {'NOT LIKE' if c.negated else 'LIKE'} {self.ctx.param(c.pattern)} ESCAPE '\\')"
        if isinstance(c, P.InP):
            inner = self.in_list(c.value, c.items)
            return f"(NOT {inner})" if c.negated else inner
        if isinstance(c, P.BetweenP):
            inner = f"{self.compare(c.value, '>=', c.low)} AND {self.compare(c.value, '<=', c.high)}"
            return f"(NOT ({inner}))" if c.negated else f"({inner})"
        if isinstance(c, P.GraphP):
            hashes = self.graph_sets.get(c.pred.id)
            ref = self.ctx.param(hashes if hashes is not None else f"<graphs satisfying #{c.pred.id}>")
            return f"(CASE WHEN v.graph_hash IS NULL THEN NULL ELSE list_contains({ref}, v.graph_hash) END)"
        raise AssertionError(c)  # pragma: no cover

    def in_list(self, left: P.BoundValue, items: tuple[P.Const, ...]) -> str:
        """`left in [items]` with the values bound as one list parameter, however many there are:
        true if some item equals left, NULL if left is NULL (as the chain of == it stands for)."""
        tests: list[str] = []
        if any(i.value is None for i in items):
            tests.append(self.compare(left, "==", P.Const(None, "null")))
        values = [i.value for i in items if i.value is not None]
        if values:
            if isinstance(left, P.HParam):
                if isinstance(values[0], bool):
                    col, values = self.value(left, "value_json"), ["true" if v else "false" for v in values]
                else:
                    col = self.value(left, "value_str" if isinstance(values[0], str) else "value_num")
            else:
                col = self.value(left)
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) \
                    and any(isinstance(v, float) for v in values):
                values = [float(v) for v in values]     # one element type for the list parameter
            ref = self.ctx.param(values)
            if left.vtype == P.ID:      # ids match by unique prefix, like ==
                tests.append(f"(CASE WHEN {col} IS NULL THEN NULL ELSE "
                             f"EXISTS (SELECT 1 FROM unnest({ref}) AS u(x) WHERE starts_with({col}, u.x)) END)")
            elif left.vtype == P.TIME:
                tests.append(f"({col} IN (SELECT CAST(unnest({ref}) AS TIMESTAMP)))")
            else:
                tests.append(f"({col} IN (SELECT unnest({ref})))")
        return tests[0] if len(tests) == 1 else "(" + " OR ".join(tests) + ")"

    def compare(self, left: P.BoundValue, op: str, right: P.BoundValue) -> str:
        sql_op = "<>" if op == "!=" else ("=" if op == "==" else op)
        if isinstance(right, P.Const):
            val = right.value
            if val is None:
                col = self.value(left)
                return f"({col} IS {'NOT ' if op == '!=' else ''}NULL)"
            if isinstance(left, P.HParam):
                if isinstance(val, bool):
                    return f"({self.value(left, 'value_json')} {sql_op} {self.ctx.param('true' if val else 'false')})"
                column = "value_str" if isinstance(val, str) else "value_num"
                return f"({self.value(left, column)} {sql_op} {self.ctx.param(val)})"
            col = self.value(left)
            if left.vtype == P.ID and op in ("==", "!="):    # ids match by unique prefix, like everywhere in dlv
                test = f"starts_with({col}, {self.ctx.param(val)})"
                return f"({test})" if op == "==" else f"(NOT {test})"
            if left.vtype == P.TIME:
                return f"({col} {sql_op} CAST({self.ctx.param(val)} AS TIMESTAMP))"
            return f"({col} {sql_op} {self.ctx.param(val)})"
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


def compile_select(plan: P.SelectPlan, graph_sets: GraphSets, ctx: SqlContext, mode: str = "rows") -> str:
    """SQL for a select plan. mode: 'rows' (output columns), 'ids' (v.id, for nesting),
    'graphs' (distinct graph hashes passing the graph-free conjuncts: the prefilter)."""
    scope = _Scope(ctx, graph_sets)
    where: list[str] = []
    if isinstance(plan.source, P.SubquerySource):
        where.append(f"v.id IN ({compile_select(plan.source.plan, graph_sets, ctx, 'ids')})")
    if mode == "graphs":
        where += [scope.cond(c) for c in P.conjuncts(plan.filter) if not P.graph_predicates(c)]
        where.append("v.graph_hash IS NOT NULL")
        select = "SELECT DISTINCT v.graph_hash"
        order_sql = limit_sql = ""
    else:
        if plan.filter is not None:
            where.append(scope.cond(plan.filter))
        if mode == "ids":
            select = "SELECT v.id"
        else:
            select = "SELECT " + ", ".join(f"{scope.value(c.value)} AS c{i}" for i, c in enumerate(plan.columns))
        terms: list[str] = []
        for k in plan.order:
            for t in scope.sort_terms(k.value):
                terms.append(f"{t} {'DESC' if k.descending else 'ASC'} NULLS LAST")
        terms += ["v.model ASC", "v.seq ASC"]
        order_sql = " ORDER BY " + ", ".join(terms)
        limit_sql = f" LIMIT {ctx.param(plan.limit)}" if plan.limit is not None else ""
    joins = " ".join(sql for _, sql in scope.joins.values())
    where_sql = (" WHERE " + " AND ".join(where)) if where else ""
    return f"{select} FROM versions v{(' ' + joins) if joins else ''}{where_sql}{order_sql}{limit_sql}"
