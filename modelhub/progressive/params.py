"""Affine parameters of a group at given read levels: intervals -> folded center/radius.

Batch norm is folded into the preceding layer in interval arithmetic (every
operation rounded outward), so the folded weight interval contains the exact
folded weight: s = gamma / sqrt(var + eps), W' = W s, b' = (b - mean) s + beta.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from .interval import U64, center_radius, iv_abs_max, iv_add, iv_mul, iv_recip_sqrt
from .plan import AffineGroup
from .rules import AffineParams

Intervals = Callable[[str], tuple[torch.Tensor, torch.Tensor]]

# rounding of an unfolded eval-mode batch norm in the reference (alpha = gamma * invstd,
# beta' = beta - mean * alpha, y = x * alpha + beta'): a handful of ulps, counted generously
_BN_REF_ULPS = 17.0


def _iv(read: Intervals, name, shape_like: int, default: float) -> tuple[torch.Tensor, torch.Tensor]:
    if name is None:
        v = torch.full((shape_like,), default, dtype=torch.float64)
        return v, v
    return read(name)


def _bn_scale_shift(g: AffineGroup, read: Intervals, n: int):
    gw, gb, mean, var = g.bn
    glo, ghi = _iv(read, gw, n, 1.0)
    blo, bhi = _iv(read, gb, n, 0.0)
    mlo, mhi = read(mean)
    vlo, vhi = read(var)
    rlo, rhi = iv_recip_sqrt(vlo, vhi, g.bn_eps)
    slo, shi = iv_mul(glo, ghi, rlo, rhi)
    return (slo, shi), (blo, bhi), (mlo, mhi)


def affine_params(g: AffineGroup, read: Intervals, u_ref: float) -> AffineParams:
    """Center/radius of the group's (folded) weight and bias from the tensors' intervals."""
    if g.kind == "bn":
        n = int(read(g.bn[2])[0].numel())
        (slo, shi), (blo, bhi), (mlo, mhi) = _bn_scale_shift(g, read, n)
        ms = iv_mul(mlo, mhi, slo, shi)
        tlo, thi = iv_add(blo, bhi, -ms[1], -ms[0])          # t = beta - mean * s
        sc, ds = center_radius(slo, shi)
        tc, dt = center_radius(tlo, thi)
        mag = iv_abs_max(slo, shi) * iv_abs_max(mlo, mhi) + iv_abs_max(blo, bhi)
        return AffineParams(sc, ds, tc, dt, mag * (1 + 4 * U64), _BN_REF_ULPS * u_ref)
    wlo, whi = read(g.weight)
    n_out = wlo.shape[0]
    blo, bhi = _iv(read, g.bias, n_out, 0.0)
    extra = 0.0
    if g.bn is not None:
        (slo, shi), (betalo, betahi), (mlo, mhi) = _bn_scale_shift(g, read, n_out)
        shape = (-1,) + (1,) * (wlo.dim() - 1)
        wlo, whi = iv_mul(wlo, whi, slo.reshape(shape), shi.reshape(shape))
        dlo, dhi = iv_add(blo, bhi, -mhi, -mlo)                # b - mean
        plo, phi = iv_mul(dlo, dhi, slo, shi)
        mag = iv_abs_max(slo, shi) * (iv_abs_max(blo, bhi) + iv_abs_max(mlo, mhi)) + iv_abs_max(betalo, betahi)
        blo, bhi = iv_add(plo, phi, betalo, betahi)
        extra = _BN_REF_ULPS * u_ref
    else:
        mag = iv_abs_max(blo, bhi)
    wc, dw = center_radius(wlo, whi)
    bc, db = center_radius(blo, bhi)
    return AffineParams(wc, dw, bc, db, mag * (1 + 4 * U64), extra)


def group_reader(source, levels: Mapping[str, int]) -> Intervals:
    """Intervals of each tensor at its current level, cached by the source's own reads."""
    return lambda name: source.intervals(name, levels[name])
