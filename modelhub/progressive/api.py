"""Entry points: progressive evaluation of a plain module or of a repository version."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Mapping, Optional

import numpy as np
import torch
import torch.fx
from torch import nn

from .driver import ProgressiveConfig, exact_module, run_refinement
from .errors import ProgressiveInputError, UnsupportedLayerError
from .plan import build_plan
from .prefix import free_prefix, prefix_features
from .report import LevelStat, ProgressiveReport
from .source import ManifestSource, source_from_state_dict


def _as_tensor(inputs) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(inputs)) if not isinstance(inputs, torch.Tensor) else inputs
    if x.dim() < 2 or x.shape[0] == 0:
        raise ProgressiveInputError(f"inputs must be a non-empty batch [N, ...], got shape {list(x.shape)}; "
                                    "stack the records along the first dimension")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ProgressiveInputError("inputs contain NaN or infinity, which no bound can contain; clean the records first")
    return x.detach().to(torch.float32) if x.dtype != torch.float64 else x.detach()


def _trace(module: nn.Module) -> torch.fx.GraphModule:
    if isinstance(module, torch.fx.GraphModule):
        return module
    try:
        return torch.fx.symbolic_trace(module)
    except Exception as exc:  # noqa: BLE001 - any tracing failure means: no graph to bound
        raise UnsupportedLayerError(f"the network cannot be traced with torch.fx ({type(exc).__name__}); "
                                    "progressive inference needs a traceable network") from None


def evaluate_module(module: nn.Module, inputs, *, top_k: int = 1, source: Optional[ManifestSource] = None,
                    config: Optional[ProgressiveConfig] = None, fallback: bool = True, compare: bool = False,
                    given: Optional[Mapping[str, torch.Tensor]] = None) -> ProgressiveReport:
    """Progressive top-k labels of ``module`` on ``inputs`` (a batch, already preprocessed).

    ``source`` serves the weights (default: the module's own state dict, encoded in memory with
    the archive's codec); ``given`` maps a node name to exact features of every record (a frozen
    prefix's materialized output): only the network after it is bounded and read.
    ``fallback``: on a layer without a bound rule, evaluate at full precision (reported) rather
    than raise. ``compare``: also time the full-precision evaluation and check agreement.
    """
    cfg = replace(config or ProgressiveConfig(), top_k=top_k)
    gm = _trace(module).eval()
    src = source if source is not None else source_from_state_dict(gm.state_dict())
    # with ``given``, raw ``inputs`` (optional) serve only the full-precision fallback
    x_raw = _as_tensor(inputs) if given is None or inputs is not None else None
    x = x_raw if given is None else None
    if given is not None:
        given = {k: _as_tensor(v) for k, v in given.items()}
    try:
        plan = build_plan(gm, fold_bn=cfg.fold_bn)
        if given is None:
            given = _free_prefix_given(gm, plan, src, x)
            x = None if given is not None else x
        report = run_refinement(gm, plan, x, src, cfg, given=given)
    except UnsupportedLayerError as exc:
        if not fallback:
            raise
        report = _full_precision(gm, x_raw, src, cfg, str(exc))
        given = None
    if compare:
        report = _compare(report, gm, x_raw if given is None else None, src, given)
    return report


def _free_prefix_given(gm, plan, src, x) -> Optional[dict[str, torch.Tensor]]:
    """{node: the reference's float32 features} where a prefix's tensors are all held whole already
    (a selection's shared ledger after a sibling read them; see prefix.py), else None."""
    node = free_prefix(plan, src)
    if node is None:
        return None
    held = [t for t in gm.state_dict() if src.has(t) and src.free_levels(t) >= src.levels(t)]
    return {node: prefix_features(exact_module(gm, src, held), node, x)}


def _full_precision(gm, x, src, cfg: ProgressiveConfig, reason: str) -> ProgressiveReport:
    """The refusal path: the whole network at full precision, every tensor read whole."""
    if x is None:
        raise ProgressiveInputError("a network without a bound rule cannot start from given features; "
                                    "evaluate it without --progressive")
    t0 = time.perf_counter()
    names = [t for t in gm.state_dict() if src.has(t)]
    base = src.bytes_read
    with torch.no_grad():
        out = exact_module(gm, src, names)(x)
    labels = torch.topk(out, cfg.top_k, dim=1).indices.numpy()
    read = src.bytes_read - base
    total = sum(src.total_bytes(t) for t in names)
    n = int(x.shape[0])
    stat = LevelStat(0, 0.0, (), read, read / total if total else 1.0, n, n, 1.0)
    return ProgressiveReport(n, cfg.top_k, labels, read, total, (stat,), n, read / total if total else 1.0,
                             time.perf_counter() - t0, fallback=reason)


def _compare(report: ProgressiveReport, gm, x, src, given) -> ProgressiveReport:
    """Full-precision evaluation of the same records (exact weights), timed, and the agreement."""
    names = [t for t in gm.state_dict() if src.has(t)]
    if given:   # the head only: the prefix's tensors are neither needed nor read
        from .driver import _reference
        from .propagate import needed_nodes
        plan = build_plan(gm)
        needed = needed_nodes(plan, given)
        names = sorted({t for g, grp in plan.groups.items() if g in needed for t in grp.tensors if src.has(t)})
    else:
        module = exact_module(gm, ManifestExactView(src), names)
    t0 = time.perf_counter()
    with torch.no_grad():
        if given:
            out = _reference(gm, plan, ManifestExactView(src), names, None, given)
        else:
            out = module(x)
    full_time = time.perf_counter() - t0
    ref = torch.topk(out, report.top_k, dim=1).indices.numpy()
    agree = float(np.mean([set(a) == set(b) for a, b in zip(ref.tolist(), report.labels.tolist())]))
    return replace(report, full_time_s=full_time, agreement=agree)


class ManifestExactView:
    """Exact reads that do not count towards the progressive query's bytes (the comparison's own)."""

    def __init__(self, src: ManifestSource) -> None:
        self._src = src

    def exact(self, name: str) -> torch.Tensor:
        before = self._src.bytes_read
        try:
            return self._src.exact(name)
        finally:
            self._src.bytes_read = before
