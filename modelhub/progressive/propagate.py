"""Run a bound plan over a batch of records: boxes in, boxes of the outputs out."""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch

from . import rules as R
from .plan import RefinementPlan, Step


def _resolve(a: Any, env: dict) -> Any:
    if isinstance(a, tuple) and len(a) == 2 and a[0] == "node" and isinstance(a[1], str):
        return env[a[1]]
    if isinstance(a, (list, tuple)):
        return type(a)(_resolve(x, env) for x in a)
    return a


def propagate(plan: RefinementPlan, x: torch.Tensor, params: Mapping[str, R.AffineParams], ctx: R.Ctx,
              scales: Optional[Mapping[str, torch.Tensor]] = None,
              given: Optional[Mapping[str, torch.Tensor]] = None, env: Optional[dict] = None) -> R.Box:
    """The output box of every record in ``x``.

    ``given``: exact values of some nodes (a frozen prefix's materialized features); the nodes
    they make unnecessary are not evaluated and their groups need no parameters. ``env``: filled
    with every node's value (boxes, python values), for the linear pass to reuse.
    """
    env = {} if env is None else env
    needed = needed_nodes(plan, given or {})
    for step in plan.steps:
        if step.node not in needed:
            continue
        if given and step.node in given:
            env[step.node] = R.Box.exact(given[step.node])
            continue
        env[step.node] = _run(plan, step, env, x, params, ctx, scales)
        if step.kind == "output":
            return env[step.node]
    raise AssertionError("plan without output")


def _run(plan: RefinementPlan, step: Step, env: dict, x, params, ctx, scales):
    if step.kind == "input":
        return R.Box.exact(x)
    args = _resolve(step.args, env)
    if step.kind == "skip":     # a batch norm folded into the layer before it
        return args[0]
    if step.kind == "output":
        out = args[0]
        return out[0] if isinstance(out, (list, tuple)) else out
    if step.kind == "affine":
        p = params[step.group]
        scale = scales.get(step.group) if scales else None
        g = plan.groups[step.group]
        if g.kind == "bn":
            return R.channel_affine(args[0], p, ctx, scale)
        return R.affine(args[0], p, g.op(), g.fan_in, ctx, scale)
    return step.fn(list(args), ctx)


def needed_nodes(plan: RefinementPlan, given: Mapping[str, Any]) -> set[str]:
    """Nodes on a path from the input (or a given node) to the output, walking back from the output."""
    deps = {s.node: _deps(s.args) for s in plan.steps}
    out = plan.steps[-1].node
    seen: set[str] = set()
    stack = [out]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n in given:
            continue
        stack.extend(deps.get(n, ()))
    return seen


def _deps(a: Any) -> list[str]:
    if isinstance(a, tuple) and len(a) == 2 and a[0] == "node" and isinstance(a[1], str):
        return [a[1]]
    if isinstance(a, (list, tuple)):
        return [d for x in a for d in _deps(x)]
    if isinstance(a, dict):
        return [d for x in a.values() for d in _deps(x)]
    return []
