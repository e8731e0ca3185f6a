"""Human-readable plans for `explain` (stable text: golden files compare it)."""
from __future__ import annotations

from ..engine.spec import overrides_text, path_text
from . import plan as P
from .plan import value_text
from .lowering import select_sql


def render(plan: P.StatementPlan, candidates: list | None = None) -> str:
    lines: list[str] = []
    if isinstance(plan, P.ExplainPlan):
        plan = plan.inner
    if isinstance(plan, P.SavePlan):
        lines.append(f'SaveQuery "{plan.name}"')
        if isinstance(plan.inner, P.SelectPlan):
            _select(plan.inner, lines, 1)
        else:
            lines += ["  " + line for line in render(plan.inner).splitlines()]
    elif isinstance(plan, P.SelectPlan):
        _select(plan, lines, 0)
        _sql(plan, lines)
    elif isinstance(plan, P.SlicePlan):
        lines.append(f"Slice {plan.target}: new network from {plan.input.text(plan.rows.var)} "
                     f"to {plan.output.text(plan.rows.var)} (all paths between them), per source version")
        _select(plan.rows, lines, 1)
        _sql(plan.rows, lines)
    elif isinstance(plan, P.ConstructPlan):
        lines.append(f"Construct {plan.target}: graph surgery per source version")
        for op in plan.ops:
            lines.append("  " + _op_text(op, plan.rows.var))
        _select(plan.rows, lines, 1)
        _sql(plan.rows, lines)
    elif isinstance(plan, P.EvaluatePlan):
        lines.append("Evaluate (run by the engine: train, validate, keep the best)")
        lines.append(f"  config: {plan.config_name} = {plan.config_source!r}")
        for axis in plan.grid:
            vals = ", ".join(repr(v) for v in axis.values)
            lines.append(f"  vary {plan.config_name}.{path_text(axis.path)} in [{vals}]"
                         + ("  (auto: default grid)" if axis.auto else ""))
        if plan.keep_k is not None:
            lines.append(f"  keep top {plan.keep_k} by {plan.keep_metric!r} after {plan.keep_after} iterations")
        scope = f"versions of model {plan.model}" if plan.model else "versions the source selects"
        if plan.latest:
            scope += ", the latest of each model that no evaluate committed"
        lines.append(f"  sources: {scope}")
        _select(plan.rows, lines, 1)
        if candidates is not None:
            n_grid = 1
            for axis in plan.grid:
                n_grid *= len(axis.values)
            lines.append(f"  candidates: {len(candidates)} = {len(candidates) // max(n_grid, 1)} model(s) "
                         f"x {n_grid} setting(s)")
            for c in candidates[:20]:
                lines.append(f"    {c.version_id[:12]}  {overrides_text(c.overrides)}")
            if len(candidates) > 20:
                lines.append(f"    ... {len(candidates) - 20} more")
    return "\n".join(lines)


def _op_text(op: P.GraphOp, var: str) -> str:
    if isinstance(op, P.InsertOp):
        where = f" (only layers where {', '.join(p.text(var) for p in op.restrict)})" if op.restrict else ""
        return f'insert {op.template.text()} after each {var}["{op.target.text}"]{where}'
    if isinstance(op, P.DeleteNodeOp):
        return f'delete each {var}["{op.target.text}"] (consumers rewired to its input)'
    return f'delete edges {var}["{op.src.text}"] -> {var}["{op.dst.text}"]'


def _select(plan: P.SelectPlan, lines: list[str], depth: int) -> None:
    pad = "  " * depth
    cols = ", ".join(c.name for c in plan.columns)
    lines.append(f"{pad}Select {plan.var} [{cols}]")
    if isinstance(plan.source, P.SubquerySource):
        lines.append(f"{pad}  source: {plan.source.label}")
        _select(plan.source.plan, lines, depth + 2)
    elif isinstance(plan.source, P.DerivedSource):
        lines.append(f"{pad}  source: the versions committed from the networks of {plan.source.label}")
        lines += [f"{pad}    " + line for line in render(plan.source.plan).splitlines()]
    elif isinstance(plan.source, P.IdsSource):
        lines.append(f"{pad}  source: {len(plan.source.ids)} version(s) of {plan.source.label}")
    else:
        lines.append(f"{pad}  source: all versions")
    if plan.join_var is not None:
        lines.append(f"{pad}  join: {plan.join_var} over all versions (rows are the pairs the filter keeps)")
    preds = P.graph_predicates(plan.filter)
    if plan.filter is not None:
        lines.append(f"{pad}  filter: {cond_text(plan.filter, plan.var)}")
    for p in preds:
        how = ("[in SQL over graph_nodes/graph_edges]" if p.ops is not None
               else "[over stored graphs; only graphs passing the other conjuncts]")
        lines.append(f"{pad}  graph predicate #{p.id}: {p.text(plan.var)}  {how}")
    if plan.aggregate:
        keys = ", ".join(value_text(g, plan.var) for g in plan.group)
        lines.append(f"{pad}  group by: {keys}" if keys else f"{pad}  aggregate: one row over all selected versions")
    if plan.having is not None:
        lines.append(f"{pad}  having: {cond_text(plan.having, plan.var)}")
    if plan.order:
        lines.append(f"{pad}  order by: " + ", ".join(
            value_text(k.value, plan.var) + (" desc" if k.descending else "") for k in plan.order))
    if plan.limit is not None:
        lines.append(f"{pad}  limit: {plan.limit}")


def cond_text(c: P.BoundCond, var: str) -> str:
    if isinstance(c, P.AndP):
        return "(" + " and ".join(cond_text(i, var) for i in c.items) + ")"
    if isinstance(c, P.OrP):
        return "(" + " or ".join(cond_text(i, var) for i in c.items) + ")"
    if isinstance(c, P.NotP):
        return f"not {cond_text(c.operand, var)}"
    if isinstance(c, P.Compare):
        return f"{value_text(c.left, var)} {c.op} {value_text(c.right, var)}"
    if isinstance(c, P.LikeP):
        return f"{value_text(c.value, var)} {'not ' if c.negated else ''}like {c.pattern!r}"
    if isinstance(c, P.MatchesP):
        return f"{value_text(c.value, var)} {'not ' if c.negated else ''}matches {c.pattern!r}"
    if isinstance(c, P.LineageP):
        return f"{var} {'not ' if c.negated else ''}{c.relation} of {c.ref!r}"
    if isinstance(c, P.InP):
        return f"{value_text(c.value, var)} {'not ' if c.negated else ''}in [{', '.join(repr(i.value) for i in c.items)}]"
    if isinstance(c, P.BetweenP):
        return (f"{value_text(c.value, var)} {'not ' if c.negated else ''}between "
                f"{value_text(c.low, var)} and {value_text(c.high, var)}")
    if isinstance(c, P.GraphP):
        return f"graph#{c.pred.id}"
    return repr(c)  # pragma: no cover


def _sql(plan: P.SelectPlan, lines: list[str]) -> None:
    query = select_sql(plan)      # graph predicates not evaluated: placeholders
    lines.append("  sql: " + query.sql)
    if query.params:
        lines.append("  params: " + ", ".join(f"${k}={v!r}" for k, v in query.params.items()))
