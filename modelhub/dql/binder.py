"""AST -> logical plan: resolve names, paths, layer patterns, templates and keys.

Everything the user can misspell is checked here against the catalog's
:class:`Vocabulary`, and each failure is one line naming close matches.
Checks against the catalog are skipped while the catalog is empty, so
queries over a fresh repository bind (and return nothing).
"""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from . import ast as A
from . import plan as P
from .errors import BindError, PlanError, suggestion
from .parser import parse
from .patterns import compile_pattern, literal_hint
from .shown_columns import with_query_columns
from .templates import bind_template
from .vocabulary import Vocabulary

#: property -> (canonical name, type)
PROPERTIES: dict[str, tuple[str, str]] = {
    "name": ("name", P.TEXT), "model": ("name", P.TEXT),
    "id": ("id", P.ID), "parent": ("parent", P.ID),
    "creation_time": ("creation_time", P.TIME), "created_at": ("creation_time", P.TIME),
    "seq": ("seq", P.NUMBER), "message": ("message", P.TEXT), "author": ("author", P.TEXT),
    "n_params": ("n_params", P.NUMBER), "n_layers": ("n_layers", P.NUMBER),
    "n_tensors": ("n_tensors", P.NUMBER),
    "root": ("root", P.ID), "depth": ("depth", P.NUMBER),
    "run_status": ("run_status", P.TEXT),
}
#: `m.parent.X`, `m.root.X`: a value of a related version (one level)
RELATIONS = ("parent", "root")
#: aggregates over the versions of a group (`group by`); min/max without grouping keep their
#: meaning over a metric series
GROUP_FUNCTIONS = ("count", "min", "max", "avg", "sum")
DEFAULT_COLUMNS = ("id", "name", "seq", "creation_time")
AGGREGATES = {"max": "max", "min": "min", "latest": "latest", "last": "latest"}
COMPARE_OPS = {"==", "!=", "<", "<=", ">", ">="}

#: integer literals in limit, keep top(k, ..., n) and comparisons with integer-valued properties
#: (seq, n_params, layer counts ...) must fit DuckDB's BIGINT (docs/DQL.md, "Limits")
INT_MIN, INT_MAX = -(2 ** 63), 2 ** 63 - 1
#: properties whose values are integers
INTEGER_PROPS = frozenset({"seq", "n_params", "n_layers", "n_tensors", "depth"})

#: `auto` grids for evaluate's vary clause (documented in docs/DQL.md)
LAYER_LR_MULTIPLIERS = (0.0, 0.1, 1.0)
AUTO_GRIDS: dict[str, tuple] = {
    "base_lr": (0.1, 0.01, 0.001), "lr": (0.1, 0.01, 0.001), "learning_rate": (0.1, 0.01, 0.001),
    "batch_size": (32, 64, 128), "weight_decay": (0.0, 1e-4, 1e-3), "momentum": (0.0, 0.9),
    "dropout": (0.0, 0.25, 0.5), "epochs": (1, 5, 10),
}


def bind(stmt: A.Statement, vocab: Vocabulary, text: str = "") -> P.StatementPlan:
    return _Binder(vocab, text).statement(stmt)


class _Binder:
    def __init__(self, vocab: Vocabulary, text: str) -> None:
        self.vocab = vocab
        self.text = text
        self.next_pred = 1
        self.saved_stack: list[str] = []
        self.grouping = False       # binding the columns of a select with aggregates over versions
        self.result_columns: dict[str, P.BoundValue] = {}   # binding `having`: result columns by name
        self.joined_var: str | None = None  # binding a join (`from a, b`): the second variable

    # -- statements -----------------------------------------------------------------
    def statement(self, stmt: A.Statement) -> P.StatementPlan:
        if isinstance(stmt, A.Explain):
            return P.ExplainPlan(self.query(stmt.query))
        if isinstance(stmt, A.SaveQuery):
            if isinstance(stmt.query, A.EvaluateQuery):
                raise BindError(f'save query "{stmt.name}": evaluate queries cannot be saved (they train and '
                                "commit); save the select or construct that picks the models")
            return P.SavePlan(stmt.name, stmt.text, self.query(stmt.query))
        return self.query(stmt)

    def query(self, q: A.Query) -> P.QueryPlan:
        if isinstance(q, A.SelectQuery):
            plan = self.select(q)
            # `select m` shows what it filters and orders on too (a query's own result, not a source's)
            whole_model = len(q.items) == 1 and isinstance(q.items[0].value, A.Path) and not q.items[0].value.steps
            return with_query_columns(plan) if whole_model else plan
        if isinstance(q, A.SliceQuery):
            return self.slice(q)
        if isinstance(q, A.ConstructQuery):
            return self.construct(q)
        return self.evaluate(q)

    def select(self, q: A.SelectQuery) -> P.SelectPlan:
        if q.join is not None:
            return self._joined(q)
        head_var = self._head_var(q.items)
        source, var = self.source(q.source, head_var)
        if head_var != var:
            raise BindError(f"select names {head_var} but the source binds {var}; write select {var} ...")
        return self._select(q, source, var)

    def _joined(self, q: A.SelectQuery) -> P.SelectPlan:
        """`select ... from a, b where ...`: pairs of versions; b's values bind as related values."""
        if isinstance(q.source, A.SourceAll):
            var = q.source.var
        elif getattr(q.source, "alias", None):
            var = q.source.alias
        else:
            raise BindError(f"from (...), {q.join}: name the first variable, e.g. from (select m ...) as a, {q.join}")
        if q.join == var:
            raise BindError(f"from {var}, {q.join}: the two model variables need different names")
        if q.group or q.having is not None or any(_aggregates_versions(i.value) for i in q.items):
            raise BindError(f"from {var}, {q.join}: a join returns pairs of versions; aggregates over them "
                            "are not supported yet (group the versions of one variable instead)")
        roots = {r for i in q.items for r in _roots(i.value)}
        if not roots <= {var, q.join}:
            raise BindError(f"select names {', '.join(sorted(roots - {var, q.join}))}; this join calls its "
                            f"model variables {var} and {q.join}")
        source, _ = self.source(q.source, var)
        outer, self.joined_var = self.joined_var, q.join
        try:
            return replace(self._select(q, source, var), join_var=q.join)
        finally:
            self.joined_var = outer

    def _select(self, q: A.SelectQuery, source: P.Source, var: str) -> P.SelectPlan:
        cond = self.condition(q.where, var) if q.where is not None else None
        grouping = bool(q.group) or q.having is not None or any(_aggregates_versions(i.value) for i in q.items)
        outer, self.grouping = self.grouping, grouping
        try:
            group = tuple(self.value(g, var) for g in q.group)
            columns: list[P.OutputColumn] = []
            for item in q.items:
                if isinstance(item.value, A.Path) and not item.value.steps and item.value.root == self.joined_var:
                    if item.alias:
                        raise BindError(f"`{item.value.root} as {item.alias}`: a whole model cannot be renamed")
                    columns += [P.OutputColumn(f"{self.joined_var}.{c}", P.BoundRelated(
                        "join", P.Prop(*PROPERTIES[c]), self.joined_var)) for c in DEFAULT_COLUMNS]
                elif isinstance(item.value, A.Path) and not item.value.steps:
                    if grouping:
                        raise BindError(f"select {var} with aggregates: name the columns, e.g. select {var}.name, "
                                        f"count({var}) ... group by {var}.name")
                    if item.alias:
                        raise BindError(f"`{item.value.root} as {item.alias}`: a whole model cannot be renamed; "
                                        "alias a property instead, e.g. m.name as model")
                    columns += [P.OutputColumn(c, P.Prop(*PROPERTIES[c])) for c in DEFAULT_COLUMNS]
                else:
                    value = self.operand(item.value, var)
                    if grouping:
                        _check_grouped(value, group, item.value, var)
                    name = _column_name(item.value)
                    if isinstance(item.value, A.Path) and item.value.root == self.joined_var:
                        name = f"{self.joined_var}.{name}"      # `select a.name, b.name` -> name, b.name
                    columns.append(P.OutputColumn(item.alias or name, value))
            names = [c.name for c in columns]
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise BindError(f"duplicate result column {sorted(dup)[0]!r}; give one of them an alias with `as`")
            aliases = {c.name: c.value for c in columns}
            having = None
            if q.having is not None:    # it may name result columns: `having spread > 0.1`
                self.result_columns = aliases
                try:
                    having = self.condition(q.having, var)
                finally:
                    self.result_columns = {}
                _check_having(having, group, var)
            order = []
            for o in q.order:
                value = self._order_value(o.value, var, aliases)
                if grouping:
                    _check_grouped(value, group, o.value, var)
                order.append(P.SortKey(value, o.descending))
        finally:
            self.grouping = outer
        if q.limit is not None and not 0 <= q.limit <= INT_MAX:
            raise BindError(f"limit {q.limit}: the limit must be an integer from 0 to {INT_MAX}; "
                            "leave out the limit clause to get every row")
        return P.SelectPlan(var, source, cond, tuple(columns), tuple(order), q.limit, group, grouping, having)

    def _head_var(self, items: tuple[A.SelectItem, ...]) -> str:
        roots = {r for i in items for r in _roots(i.value)}
        if len(roots) > 1:
            raise BindError(f"a select names one model variable; found {', '.join(sorted(roots))}")
        if not roots:
            raise BindError("a select names its model variable in some column, e.g. select m.name, "
                            'm.metrics["acc"] * 100 as pct')
        return roots.pop()

    def _order_value(self, v: A.Value, var: str, aliases: dict) -> P.BoundValue:
        if isinstance(v, A.Path) and not v.steps and v.root in aliases and v.root != var:
            return aliases[v.root]
        if isinstance(v, A.Path) and not v.steps:
            raise BindError(f"order by {v.root}: name a property (e.g. {var}.creation_time) or a result column "
                            f"({', '.join(aliases)})")
        return self.value(v, var)

    def source(self, src: A.Source | None, default_var: str) -> tuple[P.Source, str]:
        if src is None:
            return P.AllVersions(), default_var
        if isinstance(src, A.SourceAll):
            return P.AllVersions(), src.var
        if isinstance(src, A.SourceSubquery):
            inner = self.select(src.query)
            _check_source(inner)
            return P.SubquerySource(inner, "subquery"), src.alias or default_var
        # saved query
        name = src.name
        if name not in self.vocab.saved:
            raise BindError(f'unknown saved query "{name}": {suggestion(name, self.vocab.saved, "saved queries")} '
                            "(save one with: save query NAME as select ...)", unknown_name=True)
        if name in self.saved_stack:
            raise BindError(f'saved query "{name}" refers to itself through {" -> ".join(self.saved_stack)}; '
                            "save it again without the cycle")
        self.saved_stack.append(name)
        try:
            stmt = parse(self.vocab.saved[name])
            if isinstance(stmt, (A.SliceQuery, A.ConstructQuery)):
                # the versions committed from its networks (evaluate commits the missing ones)
                derived = self.slice(stmt) if isinstance(stmt, A.SliceQuery) else self.construct(stmt)
                return P.DerivedSource(derived, f'saved query "{name}"'), src.alias or default_var
            if not isinstance(stmt, A.SelectQuery):
                raise BindError(f'saved query "{name}" is not a select, slice or construct query; save one of those')
            inner = self.select(stmt)
        finally:
            self.saved_stack.pop()
        _check_source(inner)
        return P.SubquerySource(inner, f'saved query "{name}"'), src.alias or default_var

    def slice(self, q: A.SliceQuery) -> P.SlicePlan:
        rows = self._rows(q.source, q.where, q.target)
        found: dict[str, P.LayerSelector] = {}
        for a in q.assignments:
            if a.target.root != q.target or len(a.target.steps) != 1 or not isinstance(a.target.steps[0], A.Attr) \
                    or a.target.steps[0].name not in ("input", "output"):
                raise BindError(f"slice assigns {q.target}.input and {q.target}.output, not {a.target.text()}")
            key = a.target.steps[0].name
            if key in found:
                raise BindError(f"{q.target}.{key} is assigned twice; keep one")
            sel = self.selector(a.value, rows.var)
            if sel.moves:
                raise BindError(f"{a.value.text()}: slice endpoints are layers, without .next/.prev")
            found[key] = sel
        for key in ("input", "output"):
            if key not in found:
                raise BindError(f'slice needs {q.target}.{key} = {rows.var}["layer"]; add it to the mutate clause')
        return P.SlicePlan(q.target, rows, found["input"], found["output"])

    def construct(self, q: A.ConstructQuery) -> P.ConstructPlan:
        rows = self._rows(q.source, q.where, q.target)
        top_preds = [c.pred for c in P.conjuncts(rows.filter) if isinstance(c, P.GraphP)]
        ops: list[P.GraphOp] = []
        for m in q.mutations:
            if isinstance(m, A.InsertMutation):
                steps = m.target.steps
                if not steps or not isinstance(steps[-1], A.Attr) or steps[-1].name != "insert":
                    raise BindError(f'{m.target.text()} = ...: write {rows.var}["pattern"].insert = TEMPLATE("name")')
                sel = self.selector(A.Path(m.target.root, steps[:-1], m.target.span), rows.var)
                if sel.moves:
                    raise BindError(f"{m.target.text()}: insert after the matched layer itself, without .next/.prev")
                tmpl = bind_template(m.template.name, tuple(a.value for a in m.template.args),
                                     tuple((k, v.value) for k, v in m.template.kwargs), set(self.vocab.ops), True)
                restrict = _restricting(top_preds, sel)
                ops.append(P.InsertOp(sel.pattern, tmpl, restrict))
            elif isinstance(m, A.DeleteEdge):
                src, dst = self.selector(m.src, rows.var), self.selector(m.dst, rows.var)
                if src.moves or dst.moves:
                    raise BindError("delete edge takes two layers: delete edge m[\"a\"] -> m[\"b\"]")
                ops.append(P.DeleteEdgeOp(src.pattern, dst.pattern))
            else:
                sel = self.selector(m.path, rows.var)
                if sel.moves:
                    raise BindError("delete takes a layer: delete m[\"drop*\"]")
                restrict = _restricting(top_preds, sel)
                ops.append(P.DeleteNodeOp(sel.pattern, restrict))
        return P.ConstructPlan(q.target, rows, tuple(ops))

    def _rows(self, src: A.Source, where: A.Condition | None, target: str) -> P.SelectPlan:
        source, var = self.source(src, target)
        if getattr(src, "alias", None) is None and isinstance(source, P.SubquerySource):
            var = source.plan.var       # `construct m2 from (select m ...) mutate m[...]`: m names the sources
        if isinstance(src, A.SourceAll) and src.var == target:
            raise BindError(f"the new model {target} and the source model have the same name; "
                            f"write e.g. ... {target} from m1 ...")
        cond = self.condition(where, var) if where is not None else None
        cols = tuple(P.OutputColumn(c, P.Prop(*PROPERTIES[c])) for c in DEFAULT_COLUMNS)
        return P.SelectPlan(var, source, cond, cols, (), None)

    def evaluate(self, q: A.EvaluateQuery) -> P.EvaluatePlan:
        # `from NAME` naming a model: the candidates come from its versions and the query's own
        # variable (`evaluate m from NAME ... where m.seq == 1`) names them
        model = None
        if isinstance(q.source, A.SourceAll) and q.source.var in self.vocab.models:
            model = q.source.var
        elif isinstance(q.source, A.SourceSaved) and q.source.name not in self.vocab.saved \
                and q.source.name in self.vocab.models:
            model = q.source.name         # `from "digits-cnn"`: a model name that is no identifier
        elif isinstance(q.source, A.SourceSaved) and q.source.name not in self.vocab.saved:
            known = set(self.vocab.saved) | set(self.vocab.models)
            raise BindError(f'no saved query or model named "{q.source.name}": '
                            f'{suggestion(q.source.name, known, "saved queries and models")}')
        elif isinstance(q.source, A.SourceAll) and q.where is None and q.source.var != q.var:
            # `evaluate m from X` without a where clause means "the model X": a mistyped name
            # must not silently train every model of the repository
            raise BindError(f'no model named "{q.source.var}": {suggestion(q.source.var, self.vocab.models, "models")} '
                            f'(to train the latest version of every model, write `evaluate {q.var} from {q.var}`)')
        source, var = (P.AllVersions(), q.var) if model is not None else self.source(q.source, q.var)
        cond = self.condition(q.where, var) if q.where is not None else None
        cols = tuple(P.OutputColumn(c, P.Prop(*PROPERTIES[c])) for c in DEFAULT_COLUMNS)
        rows = P.SelectPlan(var, source, cond, cols, (), None)
        config_name = q.config.name if q.config else "config"
        grid: list[P.GridAxis] = []
        for item in q.vary:
            if item.path.root != config_name:
                raise BindError(f"vary {item.path.text()}: vary config settings, e.g. {config_name}.base_lr in [0.1, 0.01]")
            path = tuple(s.name if isinstance(s, A.Attr) else s.key for s in item.path.steps)
            if not path:
                raise BindError(f"vary {config_name}: name a setting, e.g. {config_name}.base_lr")
            if path[0] == "net":
                if len(path) != 3 or not isinstance(item.path.steps[1], A.Subscript):
                    raise BindError(f'vary {item.path.text()}: per-layer settings are written '
                                    f'{config_name}.net["conv*"].lr')
                # checks the pattern; like config-file rules, it may name a block (a module prefix)
                self.selector(A.Path(var, (item.path.steps[1],), item.path.span), var, module_prefixes=True)
            if any(g.path == path for g in grid):
                raise BindError(f"vary {item.path.text()} appears twice; merge the value lists")
            if item.values is None:
                grid.append(P.GridAxis(path, _auto_grid(path, item.path.text()), True))
            else:
                if not item.values:
                    raise BindError(f"vary {item.path.text()} in []: list at least one value")
                grid.append(P.GridAxis(path, tuple(v.value for v in item.values), False))
        keep_k = keep_metric = keep_after = None
        if q.keep is not None:
            mp = q.keep.metric
            if mp.root != var:
                raise BindError(f"keep top(...): the metric belongs to {var}, e.g. {var}[\"loss\"]")
            if len(mp.steps) == 1 and isinstance(mp.steps[0], A.Subscript):
                keep_metric = mp.steps[0].key
            elif len(mp.steps) == 2 and isinstance(mp.steps[0], A.Attr) and mp.steps[0].name == "metrics":
                s = mp.steps[1]
                keep_metric = s.name if isinstance(s, A.Attr) else s.key
            else:
                raise BindError(f'keep top(k, {mp.text()}, n): name the metric as {var}["loss"]')
            if not 1 <= q.keep.k <= INT_MAX:
                raise BindError(f"keep top({q.keep.k}, ...): k must be an integer from 1 to {INT_MAX}")
            if not 0 <= q.keep.after <= INT_MAX:
                raise BindError(f"keep top(k, ..., {q.keep.after}): the number of iterations must be an "
                                f"integer from 0 to {INT_MAX}")
            if q.keep.per is not None and q.keep.per.lower() != "dataset":
                raise BindError(f"keep top(...) per {q.keep.per}: only `per dataset` is known (without it the "
                                "top k are kept over all candidates)")
            keep_k, keep_after = q.keep.k, q.keep.after
        text = self.text[q.span.start:q.span.end] if self.text else ""
        latest = q.where is None and (isinstance(q.source, A.SourceAll) or model is not None)
        per_dataset = q.keep is not None and q.keep.per is not None
        return P.EvaluatePlan(rows, tuple(grid), keep_k, keep_metric, keep_after, per_dataset, config_name,
                              q.config.source if q.config else None, text, model, latest)

    # -- conditions -----------------------------------------------------------------
    def condition(self, c: A.Condition, var: str) -> P.BoundCond:
        if isinstance(c, A.And):
            return P.AndP(tuple(self.condition(i, var) for i in c.items))
        if isinstance(c, A.Or):
            return P.OrP(tuple(self.condition(i, var) for i in c.items))
        if isinstance(c, A.Not):
            return P.NotP(self.condition(c.operand, var))
        if isinstance(c, A.Has):
            sel = self.selector(c.path, var)
            t = c.template
            tmpl = bind_template(t.name, tuple(a.value for a in t.args), tuple((k, v.value) for k, v in t.kwargs),
                                 set(self.vocab.ops), False)
            ops = None if tmpl.kwargs else tuple(sorted(o for o in self.vocab.ops if re.fullmatch(tmpl.op_regex(), o)))
            pred = P.GraphPredicate(self.next_pred, sel, tmpl, ops)
            self.next_pred += 1
            return P.GraphP(pred)
        if isinstance(c, A.Comparison):
            left, right = self.operand(c.left, var), self.operand(c.right, var)
            if isinstance(left, P.Const) and isinstance(right, P.Const):
                raise BindError(f"line {c.span.line}: the comparison compares two constants; "
                                f"compare a property of {var} instead")
            if isinstance(left, P.Const):
                left, right, op = right, left, _FLIP[c.op]
            else:
                op = c.op
            right = self._check_compare(left, op, right, c.span)
            return P.Compare(left, op, right)
        if isinstance(c, A.Like):
            v = self.operand(c.operand, var)
            if isinstance(v, P.Const) or v.vtype not in (P.TEXT, P.ID, P.DYNAMIC):
                raise BindError(f"line {c.span.line}: like applies to text such as {var}.name, not {P.value_text(v, var)}")
            trailing = len(c.pattern) - len(c.pattern.rstrip("\\"))
            if trailing % 2:
                raise BindError(f'line {c.span.line}, column {c.span.column}: the like pattern "{c.pattern}" ends '
                                'with a lone backslash, which escapes the next character; write "\\\\\\\\" in '
                                'the query for a literal backslash')
            return P.LikeP(v, c.pattern, c.negated)
        if isinstance(c, A.Matches):
            v = self.operand(c.operand, var)
            if isinstance(v, P.Const) or v.vtype not in (P.TEXT, P.ID, P.DYNAMIC):
                raise BindError(f"line {c.span.line}: matches applies to text such as {var}.name, "
                                f"not {P.value_text(v, var)}")
            try:
                re.compile(c.pattern)
            except re.error as exc:
                raise BindError(f'line {c.span.line}, column {c.span.column}: "{c.pattern}" is not a regular '
                                f"expression ({exc}); e.g. matches \"alexnet[-_].*\"") from None
            return P.MatchesP(v, c.pattern, c.negated)
        if isinstance(c, A.Lineage):
            if not isinstance(c.path, A.Path):
                raise BindError(f"line {c.span.line}, column {c.span.column}: {c.relation} of relates versions; "
                                f'write {var} {c.relation} of "NAME@N"')
            self._check_root(c.path, var)
            if c.path.steps:
                raise BindError(f"{c.path.text()} {c.relation} of ...: lineage relates versions; write "
                                f'{var} {c.relation} of "NAME@N"')
            name, _, seq = c.ref.rpartition("@")
            model = name if name and seq.isdigit() else c.ref
            is_id = re.fullmatch(r"[0-9a-f]{4,64}", model) is not None
            if self.vocab.has_versions and model not in self.vocab.models and not is_id:
                raise BindError(f'{c.relation} of "{c.ref}": no model "{model}" (a ref is NAME, NAME@N or a version '
                                f'id prefix): {suggestion(model, self.vocab.models, "models")}', unknown_name=True)
            return P.LineageP(c.relation, c.ref, c.negated)
        if isinstance(c, A.InList):
            v = self.operand(c.operand, var)
            if isinstance(v, P.Const):
                raise BindError(f"line {c.span.line}: the left side of `in` must be a property of {var}")
            if not c.items:
                raise BindError(f"line {c.span.line}: the list after `in` is empty; list at least one value")
            items = tuple(self._const(i) for i in c.items)
            kinds = {_lit_kind(i.value) for i in items}
            if len(kinds) > 1:
                raise BindError(f"line {c.span.line}: the list after `in` mixes types; use only strings or only numbers")
            items = tuple(self._check_compare(v, "==", i, c.span) for i in items)
            return P.InP(v, items, c.negated)
        if isinstance(c, A.Between):
            v = self.operand(c.operand, var)
            lo, hi = self.operand(c.low, var), self.operand(c.high, var)
            if isinstance(v, P.Const):
                raise BindError(f"line {c.span.line}: the left side of `between` must be a property of {var}")
            lo = self._check_compare(v, "<=", lo, c.span)
            hi = self._check_compare(v, "<=", hi, c.span)
            return P.BetweenP(v, lo, hi, c.negated)
        raise BindError(f"unsupported condition {type(c).__name__}")  # pragma: no cover - grammar prevents it

    def _check_compare(self, left: P.BoundValue, op: str, right: P.BoundValue, span: A.Span) -> P.BoundValue:
        """Check that ``left op right`` makes sense; returns ``right``, a constant normalized for
        the SQL (a time with an offset in UTC, a huge integer compared with a float as a float)."""
        where = f"line {span.line}, column {span.column}"
        if isinstance(right, P.Const):
            val = right.value
            if val is None:
                if op not in ("==", "!="):
                    raise BindError(f"{where}: only == null and != null test for a missing value")
                return right
            if left.vtype == P.DYNAMIC:
                if isinstance(val, bool) and op not in ("==", "!="):
                    raise BindError(f"{where}: true/false compare only with == or !=")
                return _number_const(right, where, P.value_text(left, "m"), integer=False)
            if left.vtype in (P.TEXT, P.ID) and not isinstance(val, str):
                raise BindError(f'{where}: {P.value_text(left, "m")} is text; compare it with a quoted string, e.g. "{val}"')
            if left.vtype == P.NUMBER and (isinstance(val, (str, bool))):
                raise BindError(f"{where}: {P.value_text(left, 'm')} is a number; compare it with a number, not {val!r}")
            if left.vtype == P.NUMBER:
                integer = isinstance(left, P.LayerCount) or (isinstance(left, P.Prop) and left.name in INTEGER_PROPS)
                return _number_const(right, where, P.value_text(left, "m"), integer)
            if left.vtype == P.TIME:
                if not isinstance(val, str):
                    raise BindError(f'{where}: creation_time compares with a date string such as "2015-11-22"')
                return P.Const(_utc_time(val, where), right.vtype)
            return right
        types = {left.vtype, right.vtype}
        if P.DYNAMIC in types:
            # two hyperparameters, or one with a number or text: compared as numbers or as text
            if types <= {P.DYNAMIC, P.NUMBER, P.TEXT, P.ID}:
                return right
            raise BindError(f"{where}: a hyperparameter compares with numbers, text or another hyperparameter, "
                            f"not with {P.value_text(left if left.vtype != P.DYNAMIC else right, 'm')}")
        if {P.TEXT, P.ID} >= types or len(types) == 1:
            return right
        raise BindError(f"{where}: cannot compare {P.value_text(left, 'm')} ({left.vtype}) with {P.value_text(right, 'm')} ({right.vtype})")

    def operand(self, o: A.Operand, var: str) -> P.BoundValue:
        if isinstance(o, A.Literal):
            return self._const(o)
        if isinstance(o, A.Arith):
            left, right = self.operand(o.left, var), self.operand(o.right, var)
            for side in (left, right):
                if side.vtype not in (P.NUMBER, P.DYNAMIC) or isinstance(side, P.Const) and isinstance(
                        side.value, bool):
                    raise BindError(f"line {o.span.line}, column {o.span.column}: {o.op} works on numbers (metrics, "
                                    f"counts, numeric hyperparameters), not {P.value_text(side, var)}")
            if isinstance(left, P.Const) and isinstance(right, P.Const):
                raise BindError(f"line {o.span.line}, column {o.span.column}: {o.op} of two constants; "
                                "write the result instead")
            left = _number_const(left, "arithmetic", "a number", False) if isinstance(left, P.Const) else left
            right = _number_const(right, "arithmetic", "a number", False) if isinstance(right, P.Const) else right
            return P.BoundArith(left, o.op, right)
        return self.value(o, var)

    def _const(self, lit: A.Literal) -> P.Const:
        return P.Const(lit.value, _lit_kind(lit.value))

    # -- values ---------------------------------------------------------------------
    def value(self, v: A.Value, var: str) -> P.BoundValue:
        if isinstance(v, A.Path) and not v.steps and v.root != var and v.root in self.result_columns:
            return self.result_columns[v.root]
        if isinstance(v, A.Path) and v.root == self.joined_var and v.root != var:
            return self._joined_value(v, var)
        if isinstance(v, A.Call) and self.grouping and v.func.lower() in GROUP_FUNCTIONS:
            func = v.func.lower()
            if func == "count" and not v.arg.steps:
                self._check_root(v.arg, var)
                return P.GroupAggregate("count", None)
            if func == "count" and isinstance(v.arg.steps[0], A.Subscript):
                pass            # count(m["conv*"]): layers, per version
            else:
                inner = self.value(v.arg, var)
                if func != "count" and inner.vtype not in (P.NUMBER, P.DYNAMIC, P.TIME):
                    raise BindError(f"{v.func}({v.arg.text()}): {func} aggregates numbers (or times for min/max), "
                                    f"not {inner.vtype}")
                if func in ("avg", "sum") and inner.vtype == P.TIME:
                    raise BindError(f"{v.func}({v.arg.text()}): {func} takes numbers, not times")
                return P.GroupAggregate(func, inner, inner.vtype if func in ("min", "max") else P.NUMBER)
        if isinstance(v, A.Call):
            func = v.func.lower()
            if func in ("avg", "sum") or (func == "count" and not v.arg.steps):
                raise BindError(f"{v.func}(...) aggregates over versions: use it in the select list "
                                f"(select {var}.name, {v.func}(...) ... group by {var}.name)")
            if func == "count":
                sel = self.selector(v.arg, var)
                if sel.moves:
                    raise BindError(f"count({v.arg.text()}): count layers by pattern only, without .next/.prev")
                return P.LayerCount(sel.pattern)
            if func in AGGREGATES:
                inner = self.value(v.arg, var)
                if not isinstance(inner, P.Metric):
                    raise BindError(f'{v.func}(...) aggregates a metric series, e.g. {v.func}({var}.metrics["acc"])')
                return P.Metric(inner.name, AGGREGATES[func])
            raise BindError(f"unknown function {v.func}: "
                            f"{suggestion(func, list(AGGREGATES) + list(GROUP_FUNCTIONS), 'functions')}")
        self._check_root(v, var)
        steps = v.steps
        if not steps:
            raise BindError(f"{v.root} is a whole model; use a property such as {v.root}.name")
        first = steps[0]
        if isinstance(first, A.Subscript):
            raise BindError(f'{v.text()} selects layers; use it with `has` ({v.text()} has CONV) '
                            f'or count it: count({v.root}["{first.key}"])')
        if first.name == "hparams":
            key = _single_key(v, "hparams", f'{var}.hparams.lr')
            if self.vocab.has_versions and key not in self.vocab.hparam_keys:
                raise BindError(f'unknown hyperparameter "{key}" in {v.text()}: '
                                f'{suggestion(key, self.vocab.hparam_keys, "hyperparameters")}',
                                unknown_name=True)
            return P.HParam(key)
        if first.name == "metrics":
            key = _single_key(v, "metrics", f'{var}.metrics["acc"]')
            if self.vocab.has_versions and key not in self.vocab.metric_names:
                raise BindError(f'unknown metric "{key}" in {v.text()}: '
                                f'{suggestion(key, self.vocab.metric_names, "metrics")}', unknown_name=True)
            return P.Metric(key)
        if len(steps) == 1 and first.name in PROPERTIES:
            return P.Prop(*PROPERTIES[first.name])
        if len(steps) == 1 and first.name == "ancestors":
            return P.BoundAncestors()
        if first.name in RELATIONS and len(steps) > 1:
            inner = self.value(A.Path(v.root, steps[1:], v.span), var)
            if isinstance(inner, (P.BoundRelated, P.BoundAncestors)) or (
                    isinstance(inner, P.Prop) and inner.name in ("parent", "root", "depth")):
                raise BindError(f"{v.text()}: one step of lineage at a time; {v.root}.{first.name} reaches "
                                "the name, times, counts, hyperparameters and metrics of that version")
            return P.BoundRelated(first.name, inner)
        if first.name in PROPERTIES:
            raise BindError(f"{v.text()}: {v.root}.{first.name} has no further fields")
        raise BindError(f"unknown property {v.root}.{first.name}: "
                        f"{suggestion(first.name, [*PROPERTIES, 'hparams', 'metrics', 'ancestors'], 'properties')}")

    def _joined_value(self, v: A.Path, var: str) -> P.BoundValue:
        """``b.X`` of a join: X of the paired version (properties, its first parent, hyperparameters,
        latest metric values; no lineage beyond the parent id, no layers)."""
        if not v.steps:
            raise BindError(f"{v.root} is a whole model; use a property such as {v.root}.name or {v.root}.id")
        inner = self.value(A.Path(var, v.steps, v.span), var)
        if isinstance(inner, (P.BoundRelated, P.BoundAncestors, P.LayerCount)) or (
                isinstance(inner, P.Prop) and inner.name in ("root", "depth")):
            raise BindError(f"{v.text()}: the joined variable {v.root} reaches its properties, its parent id, "
                            f"hyperparameters and metrics; relate it to {var} in the where clause instead "
                            f"(e.g. {v.root}.parent == {var}.id)")
        return P.BoundRelated("join", inner, v.root)

    def selector(self, p: A.Path, var: str, module_prefixes: bool = False) -> P.LayerSelector:
        self._check_root(p, var)
        if not p.steps or not isinstance(p.steps[0], A.Subscript):
            raise BindError(f'{p.text()} is not a layer selector; write {var}["conv*"] (optionally .next or .prev)')
        pattern = compile_pattern(p.steps[0].key)
        moves: list[str] = []
        for s in p.steps[1:]:
            if not isinstance(s, A.Attr) or s.name not in ("next", "prev"):
                bad = s.name if isinstance(s, A.Attr) else f'["{s.key}"]'
                raise BindError(f"{p.text()}: after a layer selector only .next and .prev follow edges, not {bad}")
            moves.append(s.name)
        if self.vocab.has_versions and self.vocab.layer_names:
            rx = pattern.compiled()
            names = self.vocab.layer_names
            if module_prefixes:     # every enclosing module of a layer: _blocks.12 of _blocks.12._bn0
                names = names | {".".join(n.split(".")[:i]) for n in names for i in range(1, n.count(".") + 1)}
            if not any(rx.fullmatch(n) for n in names):
                short = {n.rsplit(".", 1)[-1] for n in self.vocab.layer_names}
                raise BindError(f'no layer in the catalog matches "{pattern.text}" ({p.text()}): '
                                f'{suggestion(literal_hint(pattern.text) or pattern.text, short, "layers")}',
                                unknown_name=True)
        return P.LayerSelector(pattern, tuple(moves))

    def _check_root(self, p: A.Path, var: str) -> None:
        if p.root != var and p.root == self.joined_var:
            raise BindError(f"{p.text()}: layers, counts and aggregates are read from {var}, the first variable "
                            f"of the join; {p.root} reaches its properties, hyperparameters and metrics")
        if p.root != var:
            hint = (f" ({p.root} is a model name: in `evaluate {var} from {p.root}` its versions are {var})"
                    if p.root in self.vocab.models else "")
            raise BindError(f"unknown model variable {p.root} at line {p.span.line}, column {p.span.column}; "
                            f"this query calls the model {var}{hint}")


def _check_source(inner: P.SelectPlan) -> None:
    """A source gives versions: not groups, not pairs."""
    if inner.aggregate:
        raise BindError("a query with aggregates (count, avg, group by) returns groups, not versions, "
                        "so it cannot be a source; select the versions in the sub-query instead")
    if inner.join_var is not None:
        raise BindError(f"a join (from {inner.var}, {inner.join_var}) returns pairs of versions, so it cannot be "
                        "a source; select the versions of one variable in the sub-query instead")


def _roots(o: A.Operand) -> set[str]:
    """The model variables an output column names."""
    if isinstance(o, A.Arith):
        return _roots(o.left) | _roots(o.right)
    if isinstance(o, A.Literal):
        return set()
    return {o.root if isinstance(o, A.Path) else o.arg.root}


def _aggregates_versions(v: A.Operand) -> bool:
    """`count(m)`, `avg(...)`, `sum(...)`: a select with one of these returns groups."""
    if isinstance(v, A.Arith):
        return _aggregates_versions(v.left) or _aggregates_versions(v.right)
    if not isinstance(v, A.Call):
        return False
    func = v.func.lower()
    return func in ("avg", "sum") or (func == "count" and not v.arg.steps)


def _check_grouped(value: P.BoundValue, group: tuple[P.BoundValue, ...], text: A.Operand, var: str) -> None:
    if isinstance(value, P.GroupAggregate) or value in group or isinstance(value, P.Const):
        return
    if isinstance(value, P.BoundArith):     # each side by itself: `max(...) - min(...)`
        _check_grouped(value.left, group, text.left if isinstance(text, A.Arith) else text, var)
        _check_grouped(value.right, group, text.right if isinstance(text, A.Arith) else text, var)
        return
    shown = text.text() if isinstance(text, A.Path) else _column_name(text)
    raise BindError(f"{shown} is neither grouped nor aggregated: add it to `group by` or aggregate it "
                    f"(count({var}), min, max, avg, sum)")


def _check_having(cond: P.BoundCond, group: tuple[P.BoundValue, ...], var: str) -> None:
    """`having` keeps groups: it may read aggregates and group keys, not a version's values,
    and no graph or lineage test (those are about one version; put them in `where`)."""
    if isinstance(cond, (P.AndP, P.OrP)):
        for item in cond.items:
            _check_having(item, group, var)
        return
    if isinstance(cond, P.NotP):
        _check_having(cond.operand, group, var)
        return
    if isinstance(cond, (P.GraphP, P.LineageP)):
        raise BindError("having keeps or drops groups, and a graph or lineage test is about one version: "
                        "move it to the where clause")
    values = {P.Compare: ("left", "right"), P.BetweenP: ("value", "low", "high")}.get(type(cond), ("value",))
    for name in values:
        value = getattr(cond, name)
        _check_grouped(value, group, A.Path(P.value_text(value, var), (), A.Span(0, 0, 0, 0)), var)


def _restricting(preds: list[P.GraphPredicate], sel: P.LayerSelector) -> tuple[P.GraphPredicate, ...]:
    """The where clause's graph predicates that restrict a mutation of the layers ``sel`` names:
    those over the same layers, whatever captures either spelling adds (`m1["conv*"].next has
    POOL("AVG")` restricts `m1["conv*($1)"].insert`): the patterns' capture-free regexes agree."""
    return tuple(p for p in preds if p.selector.pattern.sql_regex == sel.pattern.sql_regex)


def _number_const(c: P.Const, where: str, what: str, integer: bool) -> P.Const:
    """A numeric literal that DuckDB can take: integers compared with an integer-valued property
    must fit BIGINT; compared with a float-valued one (metrics, hyperparameters) a huge integer
    becomes a float, and must fit a double."""
    val = c.value
    if not isinstance(val, int) or isinstance(val, bool) or INT_MIN <= val <= INT_MAX:
        return c
    digits = str(abs(val))
    shown = f"{'-' if val < 0 else ''}{digits[:6]}...({len(digits)} digits)" if len(digits) > 30 else str(val)
    if integer:
        raise BindError(f"{where}: {shown} is out of range for {what}, an integer from {INT_MIN} to {INT_MAX}; "
                        "compare it with a number in that range")
    try:
        return P.Const(float(val), c.vtype)
    except OverflowError:
        raise BindError(f"{where}: {shown} is out of range for {what}: numbers are doubles, at most about 1.8e308 "
                        "in size; write a smaller number") from None


def _utc_time(val: str, where: str) -> str:
    """A time literal as the catalog stores times: naive UTC. A literal with an offset
    (`+02:00`, `Z`) is converted to UTC; one without is taken as UTC already."""
    try:
        t = datetime.fromisoformat(val)
    except ValueError:
        raise BindError(f'{where}: "{val}" is not a date; write "YYYY-MM-DD", "YYYY-MM-DD HH:MM:SS" or, with a '
                        'time zone, "YYYY-MM-DDTHH:MM:SS+02:00"') from None
    if t.tzinfo is None:
        return val
    try:
        return t.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
    except OverflowError:
        raise BindError(f'{where}: "{val}" lies outside the years 1 to 9999 once converted to UTC; '
                        "write a time within them") from None


_FLIP = {"==": "==", "!=": "!=", "<": ">", ">": "<", "<=": ">=", ">=": "<="}


def _lit_kind(v: Any) -> P.ValueType:
    if isinstance(v, bool):
        return P.BOOL
    if isinstance(v, str):
        return P.TEXT
    if v is None:
        return P.NULL
    return P.NUMBER


def _single_key(v: A.Path, field: str, example: str) -> str:
    if len(v.steps) != 2:
        raise BindError(f"{v.text()}: write one key after {field}, e.g. {example}")
    s = v.steps[1]
    return s.name if isinstance(s, A.Attr) else s.key




def _column_name(v: A.Operand) -> str:
    if isinstance(v, A.Arith):      # nested arithmetic in parentheses: `(a - b) * c`
        left, right = (f"({_column_name(x)})" if isinstance(x, A.Arith) else _column_name(x) for x in (v.left, v.right))
        return f"{left} {v.op} {right}"
    if isinstance(v, A.Literal):
        return "null" if v.value is None else str(v.value).lower() if isinstance(v.value, bool) else repr(v.value)
    if isinstance(v, A.Call):
        return f"{v.func.lower()}({_column_name(v.arg)})"
    parts = []
    for s in v.steps:
        parts.append(s.name if isinstance(s, A.Attr) else f"[{s.key}]")
    out = ".".join(parts).replace(".[", "[")
    return out or v.root


def _auto_grid(path: tuple[str, ...], text: str) -> tuple:
    if path[0] == "net" and path[-1] in ("lr", "lr_mult"):
        return LAYER_LR_MULTIPLIERS
    grid = AUTO_GRIDS.get(path[-1])
    if grid is None:
        raise PlanError(f"vary {text} auto: there is no default grid for {path[-1]!r} (defaults exist for "
                        f"{', '.join(sorted(AUTO_GRIDS))} and per-layer lr); list the values: {text} in [...]")
    return grid
