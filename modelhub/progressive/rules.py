"""Sound bound rules: each maps boxes ``[c - r, c + r]`` (float64) of its inputs to a box of its output.

A box contains two things at once: the value the *exact* network computes in
real arithmetic and the value the float32 (or float64) *reference* network
computes with the exact weights — the full-precision evaluation whose labels
progressive inference must reproduce. So every rule adds three kinds of width:

* propagated: ``|W| r`` (the input is only known to lie in its box);
* injected: ``|x| dW + db`` (the weights are only known to lie in their intervals);
* rounding: our own float64 arithmetic (gamma_n(u64) |W||x|) and the reference's
  (gamma_n(u_ref) |W||x| for any summation order), widened outward once more.

The affine rules take the radius of the *difference* between the coarse and
the exact network: the center is the coarse network's forward pass, and only
the error terms are propagated (issue 6).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .interval import TINY32, TINY64, U64, center_radius, down, gamma, sanitize, up, widen


@dataclass(frozen=True)
class Box:
    c: torch.Tensor   # center (float64)
    r: torch.Tensor   # radius (float64, >= 0, may be inf)

    @staticmethod
    def exact(x: torch.Tensor) -> "Box":
        c = x.detach().to(torch.float64)
        return Box(c, torch.zeros_like(c))

    def lo(self) -> torch.Tensor:
        return down(self.c - self.r)

    def hi(self) -> torch.Tensor:
        return up(self.c + self.r)


@dataclass(frozen=True)
class Ctx:
    """How to round: u_ref is the reference network's unit roundoff; sound=False drops the outward
    nextafter steps so autograd can differentiate the width (only for refinement heuristics)."""
    u_ref: float
    sound: bool = True


@dataclass(frozen=True)
class AffineParams:
    """Center/radius of an affine layer's (possibly batch-norm-folded) weight and bias."""
    wc: torch.Tensor
    dw: torch.Tensor
    bc: torch.Tensor
    db: torch.Tensor
    bias_mag: torch.Tensor    # upper bound of the bias magnitudes the reference adds (rounding term)
    extra_rel: float          # relative rounding of a folded batch norm in the reference


def _lo_hi(box: Box, ctx: Ctx) -> tuple[torch.Tensor, torch.Tensor]:
    if ctx.sound:
        return box.lo(), box.hi()
    return box.c - box.r, box.c + box.r


def _to_box(lo: torch.Tensor, hi: torch.Tensor, ctx: Ctx) -> Box:
    if ctx.sound:
        return Box(*center_radius(lo, hi))
    return Box((lo + hi) * 0.5, (hi - lo) * 0.5)


def affine(box: Box, p: AffineParams, op: Callable, fan_in: int, ctx: Ctx,
           scale: Optional[torch.Tensor] = None) -> Box:
    """Conv (any groups) or linear: ``op(x, W, b)``; ``scale`` multiplies the injected width (sensitivity)."""
    a = p.wc.abs() + p.dw
    rho = gamma(fan_in + 1, ctx.u_ref) + p.extra_rel
    g = gamma(fan_in + 1, U64)
    c = op(box.c, p.wc, p.bc)
    absc = box.c.abs()
    rounding_w = rho * a + g * p.wc.abs()
    rounding_b = (rho + g) * p.bias_mag
    if scale is None:
        width = op(absc, p.dw + rounding_w, p.db + rounding_b)
    else:
        width = scale * op(absc, p.dw, p.db) + op(absc, rounding_w, rounding_b)
    if bool((box.r != 0).any()):
        width = width + (1.0 + rho) * op(box.r, a, None)
    r = widen(width, fan_in + 4) if ctx.sound else width
    return Box(*sanitize(c, r)) if ctx.sound else Box(c, r)


def channel_affine(box: Box, p: AffineParams, ctx: Ctx, scale: Optional[torch.Tensor] = None) -> Box:
    """A standalone eval-mode batch norm: y = s x + t per channel (dim 1); wc/dw hold s, bc/db hold t."""
    shape = (1, -1) + (1,) * (box.c.dim() - 2)
    sc, ds, tc, dt = (v.reshape(shape) for v in (p.wc, p.dw, p.bc, p.db))
    rho = p.extra_rel
    c = sc * box.c + tc
    absc = box.c.abs()
    inj = ds * absc + dt
    width = (scale * inj if scale is not None else inj) + (1.0 + rho) * (sc.abs() + ds) * box.r
    width = width + rho * ((sc.abs() + ds) * absc + p.bias_mag.reshape(shape)) + 4 * U64 * (sc.abs() * absc + tc.abs())
    r = widen(width, 8) if ctx.sound else width
    return Box(*sanitize(c, r)) if ctx.sound else Box(c, r)


def monotone(box: Box, f: Callable, ctx: Ctx, ref_ulps: float = 0.0, our_ulps: float = 0.0) -> Box:
    """A non-decreasing elementwise map (ReLU, ReLU6, sigmoid, max pooling ...): f(lo) <= f(x) <= f(hi).

    ``ref_ulps``/``our_ulps``: how many ulps the reference's and our implementation of f may be off
    (0 for exact maps such as ReLU or max)."""
    lo_in, hi_in = _lo_hi(box, ctx)
    lo, hi = f(lo_in), f(hi_in)
    if ctx.sound and (ref_ulps or our_ulps):
        rel = ref_ulps * ctx.u_ref + our_ulps * U64
        absw = ref_ulps * TINY32 + our_ulps * TINY64
        lo = down(lo - (rel * lo.abs() + absw))
        hi = up(hi + (rel * hi.abs() + absw))
    return _to_box(lo, hi, ctx)


def positive_average(box: Box, f: Callable, n: int, ctx: Ctx) -> Box:
    """A linear map with non-negative weights summing to at most 1 over n terms (average pooling, mean)."""
    rho, g = gamma(n + 1, ctx.u_ref), gamma(n + 1, U64)
    c = f(box.c)
    width = (1.0 + rho) * f(box.r) + (rho + g) * f(box.c.abs())
    r = widen(width, n + 2) if ctx.sound else width
    return Box(*sanitize(c, r)) if ctx.sound else Box(c, r)


def add(a: Box, b: Box, ctx: Ctx) -> Box:
    u = ctx.u_ref + U64
    width = (1.0 + ctx.u_ref) * (a.r + b.r) + u * (a.c.abs() + b.c.abs())
    r = widen(width, 4) if ctx.sound else width
    return Box(a.c + b.c, r)


def add_const(a: Box, k: float, ctx: Ctx) -> Box:
    width = (1.0 + ctx.u_ref) * a.r + (ctx.u_ref + U64) * (a.c.abs() + abs(k))
    return Box(a.c + k, widen(width, 3) if ctx.sound else width)


def scale_const(a: Box, k: float, ctx: Ctx) -> Box:
    width = abs(k) * ((1.0 + ctx.u_ref) * a.r + (ctx.u_ref + U64) * a.c.abs())
    return Box(a.c * k, widen(width, 3) if ctx.sound else width)


def structural(boxes: list, f: Callable) -> Box:
    """Shape-only maps (flatten, view, concat, dropout in eval): apply to centers and radii alike."""
    return Box(f([b.c for b in boxes]), f([b.r for b in boxes]))
