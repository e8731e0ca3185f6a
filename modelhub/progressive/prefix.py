"""A prefix whose every tensor is already at hand whole is run, not bounded.

Fine-tunes of a frozen backbone share the backbone's blobs. Once one version of a selection has
read them all (the shared fetch ledger holds every segment), bounding that backbone again for the
next version costs the whole bound computation -- on EfficientNet-Lite0, ~20 s a version for 16
records -- and its float32 rounding alone keeps the bound above any margin. The float32 features at
the end of such a prefix are the reference's own values (the same module, the same weights, the
same records), so the bounds can start from them exactly (``given``) and cover only the rest.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.fx

from .plan import RefinementPlan
from .propagate import _deps


def free_prefix(plan: RefinementPlan, source) -> Optional[str]:
    """The last node through which every path from the input to the output passes and before which
    every tensor is free (all its segments held by the source's ledger); None when there is none past
    the input, or when nothing after it is left to bound."""
    last_use: dict[str, int] = {}
    for i, st in enumerate(plan.steps):
        for d in _deps(st.args) + _deps(st.kwargs):
            last_use[d] = i
    live: set[str] = set()
    seen_groups: set[str] = set()
    best = None
    for i, st in enumerate(plan.steps):
        if st.kind == "output":
            break
        if st.group is not None and st.group not in seen_groups:
            if not all(source.free_levels(t) >= source.levels(t) for t in plan.groups[st.group].tensors):
                break
            seen_groups.add(st.group)
        live = {n for n in live if last_use.get(n, -1) > i}
        if last_use.get(st.node, -1) > i:
            live.add(st.node)
        if live == {st.node} and st.kind != "input" and seen_groups:
            best = st.node
    if best is None or len(seen_groups) == len(plan.groups):
        return None
    return best


class _Capture(torch.fx.Interpreter):
    """Runs the graph until ``target`` is computed, and keeps its value."""

    class Done(Exception):
        pass

    def __init__(self, module: torch.fx.GraphModule, target: str) -> None:
        super().__init__(module)
        self.target, self.value = target, None

    def run_node(self, n: torch.fx.Node):
        out = super().run_node(n)
        if n.name == self.target:
            self.value = out
            raise _Capture.Done
        return out


def prefix_features(module: torch.fx.GraphModule, node: str, x: torch.Tensor) -> torch.Tensor:
    """The value of ``node`` when ``module`` (the reference: float32, exact weights) runs on ``x``."""
    cap = _Capture(module, node)
    with torch.no_grad():
        try:
            cap.run(x)
        except _Capture.Done:
            pass
    if not isinstance(cap.value, torch.Tensor):
        raise AssertionError(f"node {node} of the free prefix is not a tensor")
    return cap.value
