"""Outward-rounded float64 arithmetic: every helper returns bounds that contain the real result.

Why nextafter rather than a relative epsilon: one correctly rounded float64
operation is off by at most half an ulp, so stepping one ulp outward contains
the real value whatever its magnitude (denormals included).
"""
from __future__ import annotations

import torch

U64 = 2.0 ** -53            # unit roundoff of float64
U32 = 2.0 ** -24            # unit roundoff of float32
TINY64 = 2.0 ** -1022       # covers one underflowing float64 operation (its error is < 2**-1074)
TINY32 = 2.0 ** -126        # same for float32 (the reference network's arithmetic)
_INF = float("inf")


def gamma(n: int, u: float) -> float:
    """Higham's gamma_n = n u / (1 - n u): relative error bound of an n-term sum/dot product in any order."""
    nu = n * u
    if nu >= 0.5:
        return _INF
    return nu / (1.0 - nu)


def down(x: torch.Tensor) -> torch.Tensor:
    return torch.nextafter(x, torch.full_like(x, -_INF))


def up(x: torch.Tensor) -> torch.Tensor:
    return torch.nextafter(x, torch.full_like(x, _INF))


def sanitize(center: torch.Tensor, radius: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where a bound became NaN (0*inf, inf-inf) or infinite, say 'anything': center 0, radius inf."""
    bad = torch.isnan(center) | torch.isnan(radius) | torch.isinf(center) | torch.isinf(radius)
    if bool(bad.any()):
        center = torch.where(bad, torch.zeros_like(center), center)
        radius = torch.where(bad, torch.full_like(radius, _INF), radius)
    return center, radius


def center_radius(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c, r) with [lo, hi] inside [c - r, c + r]; infinite or NaN ends give (0, inf)."""
    c = (lo + hi) * 0.5                     # a rounded midpoint still lies in [lo, hi]
    r = torch.maximum(hi - c, c - lo)
    r = torch.where(r > 0, up(r), r)        # one rounding in each subtraction: one ulp outward
    bad = torch.isnan(lo) | torch.isnan(hi)
    if bool(bad.any()):
        c = torch.where(bad, torch.zeros_like(c), c)
        r = torch.where(bad, torch.full_like(r, _INF), r)
    return sanitize(c, r)


def widen(radius: torch.Tensor, n_ops: int) -> torch.Tensor:
    """A radius computed as a sum of n_ops non-negative float64 terms, made an upper bound of the real sum."""
    return radius * (1.0 + gamma(n_ops + 2, U64)) + (n_ops + 2) * TINY64


# ----------------------------------------------------------------- interval arithmetic on [lo, hi]

def iv_mul(alo, ahi, blo, bhi) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.stack([alo * blo, alo * bhi, ahi * blo, ahi * bhi])
    p = torch.nan_to_num(p, nan=0.0)        # 0 * inf: the real product of finite members is 0
    return down(p.min(0).values), up(p.max(0).values)


def iv_add(alo, ahi, blo, bhi) -> tuple[torch.Tensor, torch.Tensor]:
    return down(alo + blo), up(ahi + bhi)


def iv_recip_sqrt(lo, hi, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds of 1 / sqrt(v + eps) for v in [lo, hi] (batch norm's inverse std)."""
    vlo, vhi = down(lo + eps), up(hi + eps)
    slo = down(torch.sqrt(torch.clamp(vlo, min=0.0)))
    shi = up(torch.sqrt(torch.clamp(vhi, min=0.0)))
    inf = torch.full_like(slo, _INF)
    rlo = torch.where(shi > 0, down(1.0 / shi), inf)
    rhi = torch.where(slo > 0, up(1.0 / slo), inf)
    return rlo, rhi


def iv_abs_max(lo, hi) -> torch.Tensor:
    return torch.maximum(lo.abs(), hi.abs())
