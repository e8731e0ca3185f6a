"""Linear bounds on the reference network's error relative to the coarse network (issue 6).

Plain interval propagation bounds the error of layer ``l + 1`` by ``|W| r_l``: the sign of
every error is forgotten at every layer, so on deep batch-norm stacks the bound grows tens of
times per block although the real error does not. This pass keeps the signs where it matters,
the final margin (and, optionally, the pre-activations whose ReLU piece is in doubt):

* ``p_n`` is the *coarse* network: the center weights, run in float64 (``p_out = f(p_z)`` at
  activations, so it is one consistent network);
* ``delta_n = x_ref_n - p_n`` is what the float32 reference (exact weights) differs by. At every
  node ``delta_n = A_n(delta_inputs) + e_n`` with ``A_n`` linear (the center weights, a fixed slope
  ``s0`` per activation, a pooling map) and ``|e_n| <= rho_n`` (weight intervals, the reference's
  and our rounding, and for activations ``|s - s0| |delta_z|``: the mean-value slope ``s`` of
  ``f`` between ``p_z`` and ``z_ref`` lies in the slopes of the pieces the hull touches);
* for an objective ``c^T delta_m`` the computed adjoints ``lam_n`` (float64 backward pass of the
  linear maps) give ``c^T delta_m <= sum_n |lam_n|^T rho_n + sum_i |res_i|^T R_i``, where ``res_i``
  is the rounding of the backward pass at node i and ``R_i`` bounds ``|delta_i|`` (from the box
  pass). The identity holds for *any* ``lam``; ``|res_i| <= gamma_K sum_users |A|^T|lam|``
  with K bounding the terms of any accumulation, so each node also carries
  ``2 gamma_K |A_n| R_inputs`` in its rho. Only sums of non-negative terms are rounded afterwards,
  and they are widened outward (``widen``).

The box pass (rules.py) still runs alongside: it supplies ``R_i``, the magnitudes ``|x_ref|`` the
rounding terms need, and which activation neurons are stable. ``tighten=True`` replaces, for the
neurons whose hull straddles a kink, the box of the pre-activation by the linear bound of
``|delta_z|`` itself (intersected with the box), which makes later neurons stable and later boxes
narrower.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import torch
import torch.nn.functional as F
import torch.nn.grad

from . import rules as R
from .interval import TINY32, TINY64, U64, center_radius, down, gamma, iv_abs_max, up, widen
from .plan import ActSpec, RefinementPlan, Step
from .propagate import _deps, _resolve, needed_nodes

_INF = float("inf")
#: node kinds whose tightening :meth:`LinearPass.focus` restricts; merges are narrowed whole (measured:
#: a merge's elements feed every later layer, so their direct share of the bound undervalues them)
FOCUS_KINDS = ("act",)
_ROWS_BUDGET = 1 << 22            # elements of one adjoint tensor per chunk (32 MiB in float64)
_SMOOTH_REL = 1e-9                # widening of computed derivative bounds (a few ulps is the real error)


class Futile(Exception):
    """Tightening stopped: too many neurons of a layer straddle a kink for it to pay at this precision."""


@dataclass
class LNode:
    inputs: tuple = ()                      # node names whose deltas feed this one
    adj: Optional[Callable] = None          # (lam [rows, ...], rows) -> [lam of each input | None]
    rho: Optional[torch.Tensor] = None      # [N, ...] bound of the injected error |e_n|
    wrho: Optional[torch.Tensor] = None     # the part of rho due to the weights' read intervals
    group: Optional[str] = None
    kind: str = ""                          # "act" (an activation) | "merge" (a residual add) | ""
    rho_finite: bool = True                 # rho has no infinite element (its dot needs no 0 * inf guard)


class LinearPass:
    """Boxes, the coarse network and the linear error model of one batch of records."""

    def __init__(self, plan: RefinementPlan, x: Optional[torch.Tensor], params: Mapping[str, R.AffineParams], ctx: R.Ctx,
                 given: Optional[Mapping[str, torch.Tensor]] = None, tighten: bool = True, cut: bool = False,
                 max_straddle: float = 1.0, focus: Optional[Mapping[str, torch.Tensor]] = None,
                 boxes: Optional[Mapping[str, Any]] = None) -> None:
        """``focus``: node -> bool [N, numel], the only elements worth tightening there (see
        :meth:`focus`); a node it does not list is not tightened. None: tighten every candidate.
        ``boxes``: node -> Box of these very records, as propagate() computed them with the same
        parameters (its ``env``); used instead of recomputing them while nothing is tightened."""
        self.plan, self.params, self.ctx, self.tighten, self.cut = plan, params, ctx, tighten, cut
        self.max_straddle = max_straddle
        self.focus_mask = focus
        # a tightened box changes every box after it: reuse the box pass only without tightening
        self._boxes = boxes if boxes is not None and not tighten else {}
        self.env: dict[str, Any] = {}       # node -> Box (or a python value: sizes)
        self.p: dict[str, torch.Tensor] = {}
        self.nodes: dict[str, LNode] = {}
        self.order: list[str] = []
        self.tightened = 0                  # neurons whose box the linear bound narrowed
        self.checkpoints: set[str] = set()  # residual merges whose every element was tightened
        self.margin_ratio: Optional[torch.Tensor] = None   # set by certify()
        given = given or {}
        needed = needed_nodes(plan, given)
        # fan-out of every node: the backward pass sums one adjoint per user (gamma_K's K, see _add)
        self._users: dict[str, int] = {}
        for st in plan.steps:
            for d in set(_deps(st.args) + _deps(st.kwargs)):
                self._users[d] = self._users.get(d, 0) + 1
        self._max_numel = 1
        self.out = ""
        for step in plan.steps:
            if step.node not in needed:
                continue
            if step.node in given:
                self._exact(step.node, given[step.node])
            elif step.kind == "input":
                self._exact(step.node, x)
            else:
                self._step(step)
            if step.kind == "output":
                self.out = step.node
                break

    # ------------------------------------------------------------------ construction
    def _exact(self, name: str, value: torch.Tensor) -> None:
        box = R.Box.exact(value)
        self.env[name], self.p[name] = box, box.c
        self.nodes[name] = LNode()
        self.order.append(name)

    def _known(self, name: str) -> Optional[R.Box]:
        box = self._boxes.get(name)
        return box if isinstance(box, R.Box) else None

    def _box_inputs(self, step: Step) -> list[str]:
        seen: list[str] = []
        for d in _deps(step.args) + _deps(step.kwargs):
            if isinstance(self.env.get(d), R.Box) and d not in seen:
                seen.append(d)
        return seen

    def _radius(self, name: str) -> torch.Tensor:
        """R with |x_ref - p| <= R elementwise (the reference lies in the box)."""
        box, p = self.env[name], self.p[name]
        return torch.maximum(up(box.hi() - p), up(p - box.lo()))

    def _mag(self, name: str) -> torch.Tensor:
        box = self.env[name]
        return iv_abs_max(box.lo(), box.hi())

    def _apply(self, step: Step, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        def sub(a):
            if isinstance(a, tuple) and len(a) == 2 and a[0] == "node" and isinstance(a[1], str):
                return values[a[1]] if a[1] in values else self.env[a[1]]
            if isinstance(a, (list, tuple)):
                return type(a)(sub(v) for v in a)
            return a
        return step.call(*sub(step.args), **{k: sub(v) for k, v in step.kwargs.items()})

    def _add(self, name: str, inputs, box: R.Box, p: torch.Tensor, adj, rho, absA, wrho=None, group=None,
             terms: Optional[int] = None, kind: str = "") -> None:
        """``terms``: products summed per element by this node's adjoint (default: the output size,
        a bound for any linear map); with the inputs' fan-out it is gamma_K's K for this node."""
        numel = max([int(p[0].numel())] + [int(self.p[i][0].numel()) for i in inputs])
        self._max_numel = max(self._max_numel, numel)
        if absA is not None:
            fan = max([self._users.get(i, 1) for i in inputs] + [1])
            k = (int(p[0].numel()) if terms is None else terms) + fan + 2
            gk = 2.0 * gamma(k, U64)     # 2x: absA itself is computed in float64
            extra = torch.where(absA == 0, torch.zeros_like(absA), gk * absA)
            rho = extra if rho is None else rho + extra
        if rho is not None:
            rho = torch.nan_to_num(rho, nan=_INF)
        self.env[name], self.p[name] = box, p
        finite = rho is None or bool(torch.isfinite(rho).all())
        self.nodes[name] = LNode(tuple(inputs), adj, rho, wrho, group, kind, finite)
        self.order.append(name)

    def _step(self, step: Step) -> None:
        name = step.node
        args = _resolve(step.args, self.env)
        if step.kind in ("skip", "output"):
            src = _deps(step.args)[0]
            if not isinstance(self.env.get(src), R.Box):
                raise AssertionError(f"node {name} passes on a non-tensor")
            self._add(name, [src], self.env[src], self.p[src], lambda lam, rows: [lam], None, self._radius(src), terms=1)
            return
        if step.kind == "affine":
            self._affine(step, args)
            return
        if step.lin == "python":
            self.env[name] = step.fn(list(args), self.ctx)
            return
        inputs = self._box_inputs(step)
        if not inputs:                       # arithmetic on python values only
            self.env[name] = step.fn(list(args), self.ctx)
            return
        if step.lin == "act":
            self._act(step, inputs[0])
        elif step.lin == "maxpool":
            self._maxpool(step, inputs[0], args)
        else:
            self._linear_rule(step, inputs, args)

    def _affine(self, step: Step, args) -> None:
        g = self.plan.groups[step.group]
        prm = self.params[step.group]
        src = _deps(step.args)[0]
        p_in = self.p[src]
        M, R_in = self._mag(src), self._radius(src)
        if g.kind == "bn":
            box = self._known(step.node) or R.channel_affine(args[0], prm, self.ctx)
            shape = (1, -1) + (1,) * (p_in.dim() - 2)
            sc, ds, tc, dt, mag = (v.reshape(shape) for v in (prm.wc, prm.dw, prm.bc, prm.db, prm.bias_mag))
            p = sc * p_in + tc
            wrho = ds * M + dt
            rho = widen(wrho + prm.extra_rel * ((sc.abs() + ds) * M + mag)
                        + 4 * U64 * (sc.abs() * p_in.abs() + tc.abs()), 8)
            absA = sc.abs() * R_in
            self._add(step.node, [src], box, p, lambda lam, rows, sc=sc: [lam * sc], rho, absA, wrho, g.name, terms=1)
            return
        op, n = g.op(), g.fan_in
        box = self._known(step.node) or R.affine(args[0], prm, op, n, self.ctx)
        rho_ref = gamma(n + 1, self.ctx.u_ref) + prm.extra_rel
        g64 = gamma(n + 1, U64)
        a = prm.wc.abs() + prm.dw
        p = op(p_in, prm.wc, prm.bc)
        wrho = op(M, prm.dw, prm.db)
        rho = widen(op(M, prm.dw + rho_ref * a, prm.db + rho_ref * prm.bias_mag)
                    + g64 * op(p_in.abs(), prm.wc.abs(), prm.bc.abs()), n + 8)
        absA = op(R_in, prm.wc.abs(), None)
        wc, shape = prm.wc, tuple(p_in.shape[1:])
        if g.kind == "linear":
            terms = int(wc.shape[0])

            def adj(lam, rows):
                return [lam @ wc]
        else:
            terms = int(wc.shape[0]) // int(dict(g.conv_kwargs)["groups"]) * int(wc[0, 0].numel())
            kw = dict(g.conv_kwargs)
            grad_input = torch.nn.grad.conv2d_input if g.kind == "conv2d" else torch.nn.grad.conv1d_input
            if g.kind == "conv2d" and _plain_depthwise(wc, kw, shape):
                def adj(lam, rows):
                    return [_depthwise_adjoint(lam, wc, kw["padding"], kw["dilation"], shape)]
            else:
                def adj(lam, rows):
                    return [grad_input((lam.shape[0],) + shape, wc, lam, **kw)]
        self._add(step.node, [src], box, p, adj, rho, absA, wrho, g.name, terms=terms)

    def _act(self, step: Step, z: str) -> None:
        spec: ActSpec = step.meta
        if self.tighten and spec.kinks:
            self._tighten(z, spec.kinks)
        bz, pz = self.env[z], self.p[z]
        box = self._known(step.node) or step.fn([bz], self.ctx)
        lo, hi = bz.lo(), bz.hi()
        L, H = torch.minimum(lo, pz), torch.maximum(hi, pz)
        s_lo, s_hi = _slope_range(spec, L, H)
        s0 = (s_lo + s_hi) * 0.5
        h = up(torch.maximum(s_hi - s0, s0 - s_lo))
        Rz = self._radius(z)
        p = spec.f(pz)
        relax = torch.where(h == 0, torch.zeros_like(h), h * Rz)
        rounding = 0.0
        if spec.ref_ulps or spec.our_ulps:
            fmax = torch.maximum(spec.f(lo).abs(), spec.f(hi).abs()) * (1.0 + 1e-6)
            rounding = (spec.ref_ulps * (self.ctx.u_ref * fmax + TINY32)
                        + spec.our_ulps * (U64 * p.abs() + TINY64))
        rho = widen(relax + rounding, 4)
        absA = s0.abs() * Rz
        self._add(step.node, [z], box, p, lambda lam, rows, s0=s0: [lam * _take(s0, rows)], rho, absA, terms=1,
                  kind="act" if spec.kinks else "")

    def _maxpool(self, step: Step, src: str, args) -> None:
        box = self._known(step.node) or step.fn(list(args), self.ctx)
        p_in = self.p[src]
        p = self._apply(step, {src: p_in})
        geo = step.meta
        R_out = torch.maximum(up(box.hi() - p), up(p - box.lo()))
        if geo is None:
            self._add(step.node, [src], box, p, None, R_out, None)
            return
        pool = F.max_pool2d if geo["dims"] == 2 else F.max_pool1d
        kw = dict(kernel_size=geo["kernel_size"], stride=geo["stride"], padding=geo["padding"],
                  ceil_mode=geo["ceil_mode"])
        _, idx = pool(p_in, return_indices=True, **kw)
        b_in = self.env[src]
        lo_in, hi_in = b_in.lo(), b_in.hi()
        fi = idx.flatten(2)
        lo_sel = lo_in.flatten(2).gather(2, fi).view_as(idx)
        others = pool(hi_in.flatten(2).scatter(2, fi, -_INF).view_as(hi_in), **kw)
        stable = lo_sel > others            # this window's maximum is certainly the coarse argmax
        rho = torch.where(stable, torch.zeros_like(R_out), R_out)
        absA = torch.where(stable, self._radius(src).flatten(2).gather(2, fi).view_as(idx), torch.zeros_like(R_out))
        in_shape = tuple(p_in.shape[1:])

        def adj(lam, rows, idx=idx, stable=stable):
            g = torch.zeros((lam.shape[0],) + in_shape, dtype=lam.dtype).flatten(2)
            index = _take(idx, rows).expand(lam.shape).flatten(2)
            g.scatter_add_(2, index, (lam * _take(stable, rows)).flatten(2))
            return [g.view((lam.shape[0],) + in_shape)]
        self._add(step.node, [src], box, p, adj, rho, absA, terms=1)

    def _linear_rule(self, step: Step, inputs: list[str], args) -> None:
        box = self._known(step.node) or step.fn(list(args), self.ctx)
        p = self._apply(step, {n: self.p[n] for n in inputs})
        occurrences = [d for d in _deps(step.args) + _deps(step.kwargs) if d in inputs]
        if step.lin == "add":       # an affine map when a constant is added: |A| R is the sum of the R
            absA = sum(self._radius(d) for d in occurrences) + torch.zeros_like(p)
        else:
            absA = self._apply(step, {n: self._radius(n) for n in inputs}).abs()
        u = self.ctx.u_ref
        rho = None
        if step.lin == "avg":
            src = inputs[0]
            n = int(step.meta(self.p[src]))
            rho = widen(gamma(n + 1, u) * self._apply(step, {src: self._mag(src)})
                        + gamma(n + 1, U64) * self._apply(step, {src: self.p[src].abs()}), n + 2)
        elif step.lin in ("add", "mul"):
            consts = [float(a) for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
            k = abs(consts[0]) if consts else 0.0
            if step.lin == "add":
                mags = sum(self._mag(d) for d in occurrences)
                # the reference rounds the sum (and a scalar converted to float32: u|k|)
                rho = widen(u * (mags + 2.0 * k) + 2.0 * U64 * p.abs() + TINY64 + TINY32, 6)
            else:
                rho = widen(3.0 * u * k * self._mag(inputs[0]) + 2.0 * U64 * p.abs() + TINY64 + TINY32, 6)
        elif step.lin != "struct":
            raise AssertionError(f"no linear rule for {step.node} ({step.lin!r})")
        shapes = {n: tuple(self.p[n].shape[1:]) for n in inputs}

        def adj(lam, rows, step=step, inputs=inputs, shapes=shapes):
            zs = {n: torch.zeros((lam.shape[0],) + shapes[n], dtype=lam.dtype, requires_grad=True) for n in inputs}
            with torch.enable_grad():
                out = self._apply(step, zs)
                grads = torch.autograd.grad(out, [zs[n] for n in inputs], lam, allow_unused=True)
            return list(grads)
        merge = step.lin == "add" and len(occurrences) > 1
        self._add(step.node, inputs, box, p, adj, rho, absA, kind="merge" if merge else "")
        if self.tighten and merge:
            self._tighten_all(step.node)

    # ------------------------------------------------------------------ bounds
    def bound(self, target: str, rows, lam: torch.Tensor, want_contrib: bool = False,
              cut: bool = False, node_parts: Optional[dict] = None) -> tuple[torch.Tensor, dict]:
        """Upper bound of ``|lam^T delta_target|`` for each row; ``rows`` indexes the records (a tensor of
        record indices, or one int when every row belongs to that record). ``cut``: stop at the
        checkpoints (residual merges already tightened), bounding ``lam^T delta`` there by the box.
        Returns (bound[rows], group -> the weights' part of it[rows]). ``node_parts``: filled with
        node -> |lam_n| * rho_n [rows, numel] at activations and |lam_n| * R_n at residual merges
        (what each element's uncertainty adds to the bound; guides :meth:`focus`)."""
        pending: dict[str, torch.Tensor] = {target: lam}
        total = torch.zeros(lam.shape[0], dtype=torch.float64)
        terms = 0
        contrib: dict[str, torch.Tensor] = {}
        stop = self.order.index(target)
        for name in reversed(self.order[:stop + 1]):
            L = pending.pop(name, None)
            if L is None:
                continue
            node = self.nodes[name]
            if cut and name != target and name in self.checkpoints:
                total = total + _dot(L.abs(), self._radius(name), rows)
                terms += int(L[0].numel())
                continue
            if node_parts is not None and node.kind:
                node_parts[name] = _times(L.abs(), node.rho if node.kind == "act" else self._radius(name), rows)
            if node.rho is not None:
                a = L.abs()
                total = total + _dot(a, node.rho, rows, node.rho_finite)
                terms += int(L[0].numel())
                if want_contrib and node.wrho is not None:
                    part = _dot(a, node.wrho, rows, node.rho_finite)
                    contrib[node.group] = contrib[node.group] + part if node.group in contrib else part
            if node.adj is None:
                continue
            for inp, g in zip(node.inputs, node.adj(L, rows)):
                if g is None:
                    continue
                pending[inp] = pending[inp] + g if inp in pending else g
        total = torch.nan_to_num(total, nan=_INF)
        return widen(total, terms + 2), contrib

    def _chunks(self, n_rows: int, numel: int) -> int:
        return max(1, _ROWS_BUDGET // max(numel, self._max_numel, 1))


    def _tighten(self, z: str, kinks: tuple) -> None:
        """Narrow the box of pre-activation ``z`` where its hull straddles a kink of the activation."""
        box, p = self.env[z], self.p[z]
        lo, hi = box.lo(), box.hi()
        L, H = torch.minimum(lo, p), torch.maximum(hi, p)
        straddle = torch.zeros_like(L, dtype=torch.bool)
        for k in kinks:
            straddle |= (L < k) & (H > k)
        straddle &= torch.isfinite(L) & torch.isfinite(H)
        # judged on every straddling neuron, focused or not: a level where most of a layer is in
        # doubt does not certify, and giving up early is what keeps such levels cheap
        if float(straddle.float().mean()) > self.max_straddle:
            raise Futile(f"{float(straddle.float().mean()):.0%} of {z} straddles a kink")
        self._narrow(z, self._focused(z, straddle.flatten(1)))

    def _tighten_all(self, z: str) -> None:
        """Narrow every element of a residual merge (the focused ones) and make it a checkpoint."""
        self._narrow(z, self._focused(z, torch.isfinite(self.env[z].r).flatten(1), default=True))
        if self.focus_mask is None:
            self.checkpoints.add(z)

    def _focused(self, z: str, which: torch.Tensor, default: bool = False) -> torch.Tensor:
        """``which`` restricted to the focus; a node the focus does not list: all of it (``default``) or none."""
        if self.focus_mask is None:
            return which
        mask = self.focus_mask.get(z)
        if mask is None:
            return which if default else torch.zeros_like(which)
        return which & mask

    def _narrow(self, z: str, which: torch.Tensor) -> None:
        box, p = self.env[z], self.p[z]
        if not bool(which.any()):
            return
        lo_f, hi_f, p_f = box.lo().flatten(1).clone(), box.hi().flatten(1).clone(), p.flatten(1)
        numel = which.shape[1]
        shape = tuple(p.shape[1:])
        step = max(1, _ROWS_BUDGET // max(numel, self._max_numel))
        # one row per (record, neuron), every record's neurons in the same backward passes
        recs, pos = which.nonzero(as_tuple=True)
        for i in range(0, len(pos), step):
            r, q = recs[i:i + step], pos[i:i + step]
            lam = torch.zeros((len(q), numel), dtype=torch.float64)
            lam[torch.arange(len(q)), q] = 1.0
            b, _ = self.bound(z, r, lam.view((len(q),) + shape), cut=self.cut)
            pv = p_f[r, q]
            lo_f[r, q] = torch.maximum(lo_f[r, q], down(pv - b))
            hi_f[r, q] = torch.minimum(hi_f[r, q], up(pv + b))
        self.tightened += len(pos)
        self.env[z] = R.Box(*center_radius(lo_f.view_as(p), hi_f.view_as(p)))

    def certify(self, top_k: int, want_contrib: bool = False):
        """(certain[N], labels[N, k], upper bounds of the worst margin[N], group -> attribution[N]).

        Labels are the coarse network's top k; a record is certain when for every chosen t and
        every other j the reference's ``out_j - out_t`` is bounded below zero."""
        p_out = self.p[self.out]
        n, c = p_out.shape
        labels = torch.topk(p_out, top_k, dim=1).indices
        if c == top_k:
            self.margin_ratio = torch.zeros(n, dtype=torch.float64)
            return torch.ones(n, dtype=torch.bool), labels, torch.full((n,), -_INF, dtype=torch.float64), {}
        others = torch.ones((n, c), dtype=torch.bool).scatter(1, labels, False)
        js = others.nonzero(as_tuple=True)[1].view(n, c - top_k)
        # rows: (record, t, j) for every chosen t and every other j
        rec = torch.arange(n).repeat_interleave(top_k * (c - top_k))
        t = labels.repeat_interleave(c - top_k, dim=1).reshape(-1)
        j = js.repeat(1, top_k).reshape(-1)
        worst = torch.full((n,), -_INF, dtype=torch.float64)
        contrib_rows: dict[str, torch.Tensor] = {}
        # out_j - out_t <= hi_j - lo_t: a pair the output box already orders needs no linear bound
        # (about half of LeNet's pairs; its ratio is left 0, below any undecided pair's)
        box = self.env[self.out]
        ub_all = up(box.hi()[rec, j] - box.lo()[rec, t])
        ratio_all = torch.zeros(len(rec), dtype=torch.float64)
        open_rows = (~(ub_all < 0)).nonzero(as_tuple=True)[0]
        step = self._chunks(len(open_rows), c)
        parts: list[tuple[torch.Tensor, dict]] = []
        for i in range(0, len(open_rows), step):
            sel = open_rows[i:i + step]
            r, ti, ji = rec[sel], t[sel], j[sel]
            lam = torch.zeros((len(r), c), dtype=torch.float64)
            lam[torch.arange(len(r)), ji] = 1.0
            lam[torch.arange(len(r)), ti] = -1.0
            b, part = self.bound(self.out, r, lam, want_contrib)
            margin = up(p_out[r, ji] - p_out[r, ti])
            ub_all[sel] = torch.minimum(ub_all[sel], up(margin + b))
            # how many times the bound exceeds the room the coarse margin leaves (a tie: infinitely)
            room = -margin
            ratio_all[sel] = torch.where(room > 0, b / room.clamp(min=1e-300), torch.full_like(b, _INF))
            parts.append((sel, part))
        worst = worst.scatter_reduce(0, rec, ub_all, "amax")
        #: per record, the largest bound/room ratio over its pairs: < 1 is certain; the refinement's
        #: hopelessness test (driver._hopeless) extrapolates it to the finest intermediate level
        self.margin_ratio = torch.zeros(n, dtype=torch.float64).scatter_reduce(0, rec, ratio_all, "amax")
        certain = worst < 0
        is_worst = ub_all == worst[rec]
        arg = torch.zeros(n, dtype=torch.long).scatter_reduce(
            0, rec[is_worst], torch.arange(len(rec))[is_worst], "amax", include_self=False)
        self.worst_pair = (t[arg], j[arg])       # each record's binding (chosen, other) pair
        if want_contrib and parts and parts[0][1]:
            # attribution of each record's binding pair (every chunk reaches the same groups; a pair
            # the box ordered attributes nothing: its record is certain unless another pair binds)
            for gname in parts[0][1]:
                full = torch.zeros(len(rec), dtype=torch.float64)
                for sel, part in parts:
                    full[sel] = part[gname]
                contrib_rows[gname] = torch.nan_to_num(full[arg], nan=0.0, posinf=0.0)
        return certain, labels, worst, contrib_rows


    def focus(self, records: torch.Tensor, share: float) -> dict[str, torch.Tensor]:
        """Where tightening can change a label: for each of ``records`` (indices into this pass's
        batch, after :meth:`certify`), the pre-activation neurons and residual-merge elements whose
        uncertainty makes up ``share`` of its binding pair's bound (largest first), each kind apart.
        Returns node -> bool [len(records), numel], in the order of ``records``; tightening only
        these is as sound as tightening all (any subset only narrows boxes that hold)."""
        if not len(records):
            return {}
        c = self.p[self.out].shape[1]
        t, j = self.worst_pair
        lam = torch.zeros((len(records), c), dtype=torch.float64)
        lam[torch.arange(len(records)), j[records]] = 1.0
        lam[torch.arange(len(records)), t[records]] = -1.0
        parts: dict[str, torch.Tensor] = {}
        self.bound(self.out, records, lam, node_parts=parts)
        out: dict[str, torch.Tensor] = {}
        for kind in FOCUS_KINDS:
            names = [nm for nm in parts if self.nodes[nm].kind == kind]
            if not names:
                continue
            flat = torch.nan_to_num(torch.cat([parts[nm] for nm in names], 1), nan=_INF, posinf=_INF)
            order = flat.sort(1, descending=True)
            cum = order.values.cumsum(1)
            total = cum[:, -1:]
            # keep the largest terms until they cover the share (an infinite term: all finite ones too)
            keep_sorted = ((cum - order.values) < share * total) | torch.isinf(order.values)
            keep_sorted &= order.values > 0
            keep = torch.zeros_like(keep_sorted).scatter(1, order.indices, keep_sorted)
            start = 0
            for nm in names:
                width = parts[nm].shape[1]
                target = self.nodes[nm].inputs[0] if kind == "act" else nm
                mask = keep[:, start:start + width]
                out[target] = out[target] | mask if target in out else mask
                start += width
        return out


def _times(a: torch.Tensor, rho: torch.Tensor, rows) -> torch.Tensor:
    """a[row, k] * rho[record(row), k] per element, with 0 * inf = 0 ([rows, numel])."""
    a = a.reshape(a.shape[0], -1)
    rr = rho[rows].reshape(1, -1) if isinstance(rows, int) else rho[rows].reshape(a.shape[0], -1)
    return torch.where(a == 0, torch.zeros_like(a), a * rr)


def _slope_range(spec: ActSpec, L: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds of the mean-value slope (f(a) - f(b)) / (a - b) for a, b in [L, H]."""
    if spec.kinks:
        bounds = (-_INF,) + tuple(spec.kinks) + (_INF,)
        s_lo = torch.full_like(L, _INF)
        s_hi = torch.full_like(L, -_INF)
        for i, slope in enumerate(spec.slopes):
            touched = (L <= bounds[i + 1]) & (H >= bounds[i])
            exact = slope in (0.0, 1.0)          # others (1/6, a float slope) one ulp outward
            lo_s = slope if exact else math.nextafter(slope, -_INF)
            hi_s = slope if exact else math.nextafter(slope, _INF)
            s_lo = torch.where(touched, torch.clamp(s_lo, max=lo_s), s_lo)
            s_hi = torch.where(touched, torch.clamp(s_hi, min=hi_s), s_hi)
        bad = s_lo > s_hi                  # nothing touched (NaN bounds): any slope of f
        if bool(bad.any()):
            s_lo = torch.where(bad, torch.full_like(s_lo, min(spec.slopes)), s_lo)
            s_hi = torch.where(bad, torch.full_like(s_hi, max(spec.slopes)), s_hi)
        return s_lo, s_hi
    aL, aH = L.abs(), H.abs()
    near = torch.where((L <= 0) & (H >= 0), torch.zeros_like(L), torch.minimum(aL, aH))
    far = torch.maximum(aL, aH)
    s_hi = spec.deriv(near) * (1.0 + _SMOOTH_REL) + TINY64
    s_lo = torch.clamp(spec.deriv(far) * (1.0 - _SMOOTH_REL) - TINY64, min=0.0)
    s_lo = torch.nan_to_num(s_lo, nan=0.0)
    s_hi = torch.nan_to_num(s_hi, nan=_INF)
    return s_lo, s_hi


def _take(t: torch.Tensor, rows) -> torch.Tensor:
    """Per-record data of the rows: gathered, or one record's slice (broadcasts over its rows)."""
    return t[rows:rows + 1] if isinstance(rows, int) else t[rows]


def _dot(a: torch.Tensor, rho: torch.Tensor, rows, finite: bool = False) -> torch.Tensor:
    """sum_k a[row, k] rho[record(row), k] with 0 * inf = 0 (a zero adjoint ignores an unbounded error).
    ``finite``: rho is known to hold no infinity (wrho <= rho is then finite too), so no guard is needed."""
    if isinstance(rows, int):
        r = rho[rows].reshape(-1)
        if finite or bool(torch.isfinite(r).all()):
            return a.reshape(a.shape[0], -1) @ r
        rr = r.unsqueeze(0)
    else:
        rr = rho[rows].reshape(a.shape[0], -1)
    a = a.reshape(a.shape[0], -1)
    if finite:
        return torch.einsum("rk,rk->r", a, rr)
    return torch.where(a == 0, torch.zeros_like(a), a * rr).sum(1)


def _plain_depthwise(wc: torch.Tensor, kw: dict, in_shape: tuple) -> bool:
    """A stride-1 depthwise conv (one filter per channel, numeric padding): its adjoint is a few
    shifted multiply-adds (torch's float64 grouped-conv backward loops over the groups)."""
    stride = kw["stride"] if isinstance(kw["stride"], tuple) else (kw["stride"],) * 2
    pad = kw["padding"]
    return (kw["groups"] == in_shape[0] == wc.shape[0] and wc.shape[1] == 1 and tuple(stride) == (1, 1)
            and not isinstance(pad, str))


def _depthwise_adjoint(lam: torch.Tensor, wc: torch.Tensor, padding, dilation, in_shape: tuple) -> torch.Tensor:
    """grad_x of y = depthwise_conv(x) (stride 1): g[j] = sum_a W[a] lam[j + p - a d] (same sums as torch's)."""
    ph, pw = padding if isinstance(padding, tuple) else (padding, padding)
    dh, dw = dilation if isinstance(dilation, tuple) else (dilation, dilation)
    _, H, W = in_shape
    Ho, Wo = lam.shape[2], lam.shape[3]
    g = torch.zeros((lam.shape[0],) + tuple(in_shape), dtype=lam.dtype)
    for a in range(wc.shape[2]):
        oi = a * dh - ph                      # input row j = output row i + oi
        i0, i1 = max(0, -oi), min(Ho, H - oi)
        if i0 >= i1:
            continue
        for b in range(wc.shape[3]):
            oj = b * dw - pw
            j0, j1 = max(0, -oj), min(Wo, W - oj)
            if j0 >= j1:
                continue
            g[:, :, i0 + oi:i1 + oi, j0 + oj:j1 + oj] += wc[:, 0, a, b].view(1, -1, 1, 1) * lam[:, :, i0:i1, j0:j1]
    return g
