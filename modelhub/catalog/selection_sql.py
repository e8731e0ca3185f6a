"""A :class:`~.selection_terms.Selection` as parameterized DuckDB SQL.

User literals always travel as named parameters (``$p0``, ``$p1`` ...); the SQL text
holds only identifiers and operators chosen here. Structural graph predicates arrive
as sets of satisfying graph hashes (:class:`~.selection_terms.GraphMatch`) and become a
``list_contains`` test on the version's graph hash. ``explain`` shows this text, so it
is stable: golden files compare it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import selection_terms as T

if TYPE_CHECKING:
    from .selection_cache import DerivedRelations

#: version fields that are columns of `versions` (of the selected version or a related one)
_COLUMN_SQL = {
    "name": "model", "id": "id", "creation_time": "created_at", "seq": "seq", "message": "message",
    "author": "author", "n_params": "n_params", "n_tensors": "n_tensors",
}
#: a version's first parent (its smallest `ord`)
_FIRST_PARENT_SQL = ("(SELECT version_id, arg_min(parent_id, ord) AS parent_id FROM version_parents "
                     "GROUP BY version_id)")
#: every version's root (the end of its first-parent chain) and depth (steps to the root)
_LINEAGE_SQL = (
    "(WITH RECURSIVE chain(version_id, cur, d) AS (SELECT id, id, 0 FROM versions UNION ALL "
    f"SELECT c.version_id, fp.parent_id, c.d + 1 FROM chain c JOIN {_FIRST_PARENT_SQL} fp ON fp.version_id = c.cur) "
    "SELECT version_id, arg_max(cur, d) AS root_id, max(d) AS depth FROM chain GROUP BY version_id)")
#: every version's ancestors through any parent, nearest first
_ANCESTORS_SQL = (
    "(WITH RECURSIVE anc(version_id, anc_id, d) AS (SELECT version_id, parent_id, 1 FROM version_parents UNION "
    "SELECT a.version_id, p.parent_id, a.d + 1 FROM anc a JOIN version_parents p ON p.version_id = a.anc_id) "
    "SELECT version_id, list(anc_id ORDER BY d, anc_id) AS ids FROM (SELECT version_id, anc_id, min(d) AS d "
    "FROM anc GROUP BY version_id, anc_id) GROUP BY version_id)")
_RELATED_ALIAS = {T.Relation.PARENT: "pv", T.Relation.ROOT: "rv", T.Relation.JOINED: "jv"}

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
    #: relations computed once per catalog state (selection_cache.py); None: compute inline
    derived: "DerivedRelations | None" = None

    def param(self, value: Any) -> str:
        name = f"p{self.counter}"
        self.counter += 1
        self.values[name] = value
        return f"${name}"

    def alias(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"


def rows_sql(selection: T.Selection, derived: "DerivedRelations | None" = None) -> CompiledQuery:
    """The selection's output columns (``c0, c1 ...``), in order. With ``derived``, metric values
    and structural predicates are joined from relations kept for the catalog state (the same
    rows; explain shows the SQL without them)."""
    params = _Params(derived=derived)
    return CompiledQuery(_compile(selection, params, "rows"), params.values)


def ids_sql(selection: T.Selection, derived: "DerivedRelations | None" = None) -> CompiledQuery:
    """The ids of the selected versions, in order."""
    params = _Params(derived=derived)
    return CompiledQuery(_compile(selection, params, "ids"), params.values)


def graph_prefilter_sql(selection: T.Selection, derived: "DerivedRelations | None" = None) -> CompiledQuery:
    """The distinct graph hashes of versions passing the conjuncts of ``where`` that hold no
    graph match: only those graphs need a structural predicate evaluated over them."""
    params = _Params(derived=derived)
    return CompiledQuery(_compile(selection, params, "graphs"), params.values)


def _metric_sql(params: _Params, name: str, aggregate: T.Aggregate) -> str:
    """Each version's value of a metric series (version_id, val)."""
    return (f"SELECT version_id, {_AGGREGATE_SQL[aggregate]} AS val FROM metrics WHERE name = "
            f"{params.param(name)} GROUP BY version_id")


def _derived_metric(derived: "DerivedRelations", name: str, aggregate: T.Aggregate) -> str | None:
    own = _Params()
    sql = (f"SELECT v.rowid AS rid, mt.val FROM versions v JOIN ({_metric_sql(own, name, aggregate)}) mt "
           "ON mt.version_id = v.id WHERE mt.val IS NOT NULL")
    return derived.metric(name, aggregate, sql, own.values)


def _derived_structure(derived: "DerivedRelations", term: T.GraphStructureTerm) -> str | None:
    own = _Params()
    test = _Scope(own).graph_structure(term)
    return derived.structure(term, f"SELECT v.rowid AS rid FROM versions v WHERE coalesce({test}, false)", own.values)


class _Scope:
    """One SELECT over `versions v` with the LEFT JOINs its expressions need."""

    def __init__(self, params: _Params) -> None:
        self.params = params
        self.joins: dict[tuple, tuple[str, str]] = {}

    def join(self, key: tuple) -> str:
        if key in self.joins:
            return self.joins[key][0]
        kind = key[0]
        subj = key[-1] if kind in ("graphs", "hparam", "metric", "count") else "v"
        if kind == "graphs":
            alias = "g" if subj == "v" else f"g_{subj}"
            sql = f"LEFT JOIN graphs {alias} ON {alias}.graph_hash = {subj}.graph_hash"
        elif kind == "parent":      # of the version, or of the other version of a pair (key ("parent", "jv"))
            subj = key[1] if len(key) > 1 else "v"
            alias = "par" if subj == "v" else f"par_{subj}"
            sql = f"LEFT JOIN {_FIRST_PARENT_SQL} {alias} ON {alias}.version_id = {subj}.id"
        elif kind == "lineage":
            alias, sql = "lin", f"LEFT JOIN {_LINEAGE_SQL} lin ON lin.version_id = v.id"
        elif kind == "ancestors":
            alias, sql = "an", f"LEFT JOIN {_ANCESTORS_SQL} an ON an.version_id = v.id"
        elif kind == "related" and key[1] is T.Relation.JOINED:
            alias, sql = "jv", "CROSS JOIN versions jv"     # the where clause relates the pair
        elif kind == "related":
            alias = _RELATED_ALIAS[key[1]]
            ref = "par.parent_id" if key[1] is T.Relation.PARENT else "lin.root_id"
            self.join(("parent",) if key[1] is T.Relation.PARENT else ("lineage",))
            sql = f"LEFT JOIN versions {alias} ON {alias}.id = {ref}"
        elif kind == "hparam":
            alias = self.params.alias("hp")
            sql = (f"LEFT JOIN (SELECT version_id, value_json, value_num, value_str FROM hparams "
                   f"WHERE key = {self.params.param(key[1])}) {alias} ON {alias}.version_id = {subj}.id")
        elif kind == "metric" and (rel := self._derived_metric(key[1], key[2])) is not None:
            alias = self.params.alias("mt")
            sql = f"LEFT JOIN {rel} {alias} ON {alias}.rid = {subj}.rowid"
        elif kind == "metric":
            alias = self.params.alias("mt")
            sql = f"LEFT JOIN ({_metric_sql(self.params, key[1], key[2])}) {alias} ON {alias}.version_id = {subj}.id"
        elif kind == "count":
            alias = self.params.alias("lc")
            sql = (f"LEFT JOIN (SELECT graph_hash, count(*) AS c FROM graph_nodes WHERE "
                   f"list_contains({self.params.param(list(T.OPERATION_KINDS))}, kind) AND "
                   f"regexp_full_match(name, {self.params.param(key[1])}) GROUP BY graph_hash) {alias} "
                   f"ON {alias}.graph_hash = {subj}.graph_hash")
        else:  # pragma: no cover
            raise AssertionError(kind)
        self.joins[key] = (alias, sql)
        return alias

    def _derived_metric(self, name: str, aggregate: T.Aggregate) -> str | None:
        return None if self.params.derived is None else _derived_metric(self.params.derived, name, aggregate)

    # -- values ---------------------------------------------------------------------
    def field(self, name: str, subj: str = "v") -> str:
        if name in _COLUMN_SQL:
            return f"{subj}.{_COLUMN_SQL[name]}"
        if name == "n_layers":
            return f"{self.join(('graphs', subj))}.n_layers"
        if name == "run_status":  # finished | failed for a version a run committed, else NULL
            return f"(SELECT min(r.status) FROM runs r WHERE r.version_id = {subj}.id)"
        if name == "parent" and subj == "jv":
            return f"{self.join(('parent', 'jv'))}.parent_id"
        if subj != "v":  # pragma: no cover - DQL binds one level of relation only
            raise AssertionError(f"{name} of a related version")
        if name == "parent":
            return f"{self.join(('parent',))}.parent_id"
        if name == "root":
            return f"{self.join(('lineage',))}.root_id"
        if name == "depth":
            return f"{self.join(('lineage',))}.depth"
        raise AssertionError(name)  # pragma: no cover

    def value(self, v: T.Value, hparam_as: str = "value_json", subj: str = "v") -> str:
        if isinstance(v, T.VersionField):
            return self.field(v.name, subj)
        if isinstance(v, T.HParamValue):
            return f"{self.join(('hparam', v.key, subj))}.{hparam_as}"
        if isinstance(v, T.MetricValue):
            return f"{self.join(('metric', v.name, T.Aggregate(v.aggregate), subj))}.val"
        if isinstance(v, T.LayerCountTerm):
            alias = self.join(("count", v.name_regex, subj))
            return f"(CASE WHEN {subj}.graph_hash IS NULL THEN NULL ELSE coalesce({alias}.c, 0) END)"
        if isinstance(v, T.LiteralTerm):
            return self.params.param(v.value)
        if isinstance(v, T.RelatedTerm):
            return self.value(v.value, hparam_as, self.join(("related", T.Relation(v.relation))))
        if isinstance(v, T.AncestorsTerm):
            return f"coalesce({self.join(('ancestors',))}.ids, CAST([] AS VARCHAR[]))"
        if isinstance(v, T.Arithmetic):
            left, right = self.value(v.left, "value_num", subj), self.value(v.right, "value_num", subj)
            if v.op == "/":     # DuckDB gives inf for x / 0; no value is NULL, as in SQL's standard
                return f"({left} / nullif({right}, 0))"
            return f"({left} {v.op} {right})"
        if isinstance(v, T.Aggregated):
            if v.value is None:
                return "count(*)"
            return f"{v.func}({self.value(v.value, 'value_num', subj)})"
        raise AssertionError(v)  # pragma: no cover

    def sort_terms(self, v: T.Value) -> list[str]:
        if _is_hparam(v):    # numbers first by value, then strings
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
        if isinstance(c, T.MatchesTerm):
            col = self.value(c.value, "value_str")
            test = f"regexp_full_match({col}, {self.params.param(c.pattern)})"
            return f"(NOT {test})" if c.negated else f"({test})"
        if isinstance(c, T.LineageOf):
            return self.lineage(c)
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
        if isinstance(c, T.GraphStructureTerm):
            return self.graph_structure(c)
        if isinstance(c, T.VersionIn):
            ids = list(c.version_ids) if c.version_ids is not None else f"<versions of {c.label}>"
            return f"list_contains({self.params.param(ids)}, v.id)"
        raise AssertionError(c)  # pragma: no cover

    def graph_structure(self, c: T.GraphStructureTerm) -> str:
        """One uncorrelated semi-join over graph_nodes/graph_edges: DuckDB answers it for every
        graph at once, so no graph is read into Python."""
        if not c.ops:       # no operation in the catalog fits the template
            return "(CASE WHEN v.graph_hash IS NULL THEN NULL ELSE false END)"
        rel = None if self.params.derived is None else _derived_structure(self.params.derived, c)
        if rel is not None:
            return f"(CASE WHEN v.graph_hash IS NULL THEN NULL ELSE v.rowid IN (SELECT rid FROM {rel}) END)"
        kinds, rx = self.params.param(list(T.OPERATION_KINDS)), self.params.param(c.name_regex)
        ops = self.params.param(list(c.ops))
        joins, cur = [], "n0"
        for i, move in enumerate(c.moves, 1):
            near, far = ("src", "dst") if move == "next" else ("dst", "src")
            joins.append(f" JOIN graph_edges e{i} ON e{i}.graph_hash = n0.graph_hash AND e{i}.{near} = {cur}.idx"
                         f" JOIN graph_nodes n{i} ON n{i}.graph_hash = n0.graph_hash AND n{i}.idx = e{i}.{far}")
            cur = f"n{i}"
        sub = (f"SELECT n0.graph_hash FROM graph_nodes n0{''.join(joins)} WHERE list_contains({kinds}, n0.kind) "
               f"AND regexp_full_match(n0.name, {rx}) AND list_contains({ops}, {cur}.op)")
        return f"(CASE WHEN v.graph_hash IS NULL THEN NULL ELSE v.graph_hash IN ({sub}) END)"

    def version_ref(self, ref: T.VersionRefTerm) -> str:
        """The ids a ref names, as a subquery: NAME@N; else NAME (its latest version); else an id prefix."""
        name, _, seq = ref.text.rpartition("@")
        if name and seq.isdigit():
            return (f"(SELECT id FROM versions WHERE model = {self.params.param(name)} "
                    f"AND seq = {self.params.param(int(seq))})")
        t = self.params.param(ref.text)
        return (f"(SELECT id FROM versions WHERE model = {t} AND seq = (SELECT max(seq) FROM versions "
                f"WHERE model = {t}) UNION ALL SELECT id FROM versions WHERE starts_with(id, {t}) "
                f"AND NOT EXISTS (SELECT 1 FROM versions WHERE model = {t}))")

    def lineage(self, c: T.LineageOf) -> str:
        ref = self.version_ref(c.ref)
        if c.relation == "descendant":
            walk = (f"(WITH RECURSIVE d(id) AS (SELECT version_id FROM version_parents WHERE parent_id IN {ref} "
                    "UNION SELECT p.version_id FROM version_parents p JOIN d ON p.parent_id = d.id) SELECT id FROM d)")
        else:
            walk = (f"(WITH RECURSIVE a(id) AS (SELECT parent_id FROM version_parents WHERE version_id IN {ref} "
                    "UNION SELECT p.parent_id FROM version_parents p JOIN a ON p.version_id = a.id) SELECT id FROM a)")
        return f"(v.id {'NOT IN' if c.negated else 'IN'} {walk})"

    def in_list(self, left: T.Value, items: tuple[Any, ...]) -> str:
        """`left in [items]` with the values bound as one list parameter, however many there are:
        true if some item equals left, NULL if left is NULL (as the chain of == it stands for)."""
        tests: list[str] = []
        if any(i is None for i in items):
            tests.append(self.compare(left, T.Comparator.EQ, T.LiteralTerm(None)))
        values = [i for i in items if i is not None]
        if values:
            if _is_hparam(left):
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
            kind = _kind(left)
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
            if _is_hparam(left):
                if isinstance(val, bool):
                    return f"({self.value(left, 'value_json')} {sql_op} {self.params.param('true' if val else 'false')})"
                column = "value_str" if isinstance(val, str) else "value_num"
                return f"({self.value(left, column)} {sql_op} {self.params.param(val)})"
            col = self.value(left)
            kind = _kind(left)
            if kind is T.FieldKind.ID and op in (T.Comparator.EQ, T.Comparator.NE):
                # ids match by unique prefix, like everywhere in dlv
                test = f"starts_with({col}, {self.params.param(val)})"
                return f"({test})" if op is T.Comparator.EQ else f"(NOT {test})"
            if kind is T.FieldKind.TIME:
                return f"({col} {sql_op} CAST({self.params.param(val)} AS TIMESTAMP))"
            return f"({col} {sql_op} {self.params.param(val)})"
        lh, rh = _is_hparam(left), _is_hparam(right)
        if lh and rh:
            # two hyperparameters: numbers by value, anything else by its JSON text
            ln, rn = self.value(left, "value_num"), self.value(right, "value_num")
            if op in (T.Comparator.EQ, T.Comparator.NE):
                lj, rj = self.value(left, "value_json"), self.value(right, "value_json")
                return (f"(CASE WHEN {ln} IS NOT NULL AND {rn} IS NOT NULL THEN {ln} {sql_op} {rn} "
                        f"ELSE {lj} {sql_op} {rj} END)")
            return f"({ln} {sql_op} {rn})"
        if lh or rh:        # a hyperparameter and a value: as text when the value is text
            other = right if lh else left
            field = _field(other)
            col = "value_str" if field is not None and field.name in T.TEXT_FIELDS else "value_num"
            return f"({self.value(left, col)} {sql_op} {self.value(right, col)})"
        return f"({self.value(left)} {sql_op} {self.value(right)})"


def _is_hparam(v: T.Value) -> bool:
    """A hyperparameter (of the version or a related one): compared by its typed projections."""
    return isinstance(v, T.HParamValue) or isinstance(v, T.RelatedTerm) and _is_hparam(v.value)


def _field(v: T.Value) -> T.VersionField | None:
    while isinstance(v, T.RelatedTerm):
        v = v.value
    return v if isinstance(v, T.VersionField) else None


def _kind(v: T.Value) -> T.FieldKind:
    f = _field(v)
    return f.kind if f is not None else T.FieldKind.PLAIN


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
    group_sql = ""
    if sel.join:
        if mode != "rows":  # pragma: no cover - DQL refuses a join as a source
            raise AssertionError("a join selects pairs, not versions")
        scope.join(("related", T.Relation.JOINED))
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
            # a grouped row sorts by what it shows (a hyperparameter key by its JSON text)
            for t in ([scope.value(k.value)] if sel.aggregate else scope.sort_terms(k.value)):
                terms.append(f"{t} {'DESC' if k.descending else 'ASC'} NULLS LAST")
        if sel.aggregate:       # groups come by their keys
            keys = [scope.value(k) for k in sel.group_by]
            terms += [f"{k} ASC NULLS LAST" for k in keys]
            group_sql = (" GROUP BY " + ", ".join(keys)) if keys else ""
            if sel.having is not None:
                group_sql += " HAVING " + scope.cond(sel.having)
        else:
            terms += ["v.model ASC", "v.seq ASC"] + (["jv.model ASC", "jv.seq ASC"] if sel.join else [])
        order_sql = (" ORDER BY " + ", ".join(terms)) if terms else ""
        limit_sql = f" LIMIT {params.param(sel.limit)}" if sel.limit is not None else ""
    joins = " ".join(sql for _, sql in scope.joins.values())
    where_sql = (" WHERE " + " AND ".join(where)) if where else ""
    return f"{select} FROM versions v{(' ' + joins) if joins else ''}{where_sql}{group_sql}{order_sql}{limit_sql}"
