"""The progressive query: read coarse, bound, certify, refine where it pays, finish exactly.

Loop (one *step* per iteration) over the records not yet decided:

1. read every needed tensor at its current level and build the (folded) affine parameters;
2. propagate boxes through the plan and certify the records whose top-k is certain;
3. for the rest, attribute the output width to the groups' injected weight error (one backward
   pass through the width computation, on a sample of the undecided records) and raise by one
   segment the groups with the most width per byte of their next segment, until they cover
   ``refine_share`` of the attributed width;
4. once every needed tensor is exact, the remaining records (near-ties) run through the
   full-precision network itself, so their labels are the reference's by construction.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np
import torch
import torch.fx

from .certify import certify_topk
from .errors import ProgressiveInputError
from .linear import Futile, LinearPass
from .params import affine_params, group_reader
from .plan import RefinementPlan
from .propagate import needed_nodes, propagate
from .report import LevelStat, ProgressiveReport
from .rules import AffineParams, Box, Ctx


@dataclass(frozen=True)
class ProgressiveConfig:
    top_k: int = 1
    start_segments: int = 3          # float32: exponent, sign, 7 mantissa bits (a bfloat16's worth)
    refine_share: float = 0.5        # per step, refine groups covering this share of the attributed width
    batch_size: int = 256
    sensitivity_records: int = 64
    uniform: bool = False            # raise every group together (the baseline the benchmark compares)
    fold_bn: bool = True             # fold eval-mode batch norm into the conv/linear before it
    bound: str = "linear"            # "interval": boxes only; "linear": boxes, then linear bounds (linear.py)
    tighten: bool = True             # linear: narrow residual merges and straddling pre-activations too
    max_straddle: float = 0.25       # linear: give tightening up at a level where more of a layer straddles
    focus_share: Optional[float] = 0.9   # linear: tighten only the neurons making up this share of each
                                     # undecided record's binding bound (None: every straddling neuron)
    exact_when_hopeless: bool = True  # linear: read every tensor exact at once when a record's bound cannot
                                     # certify before the last segment (see _hopeless)

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ProgressiveInputError(f"top_k must be at least 1, got {self.top_k}; pass --top 1 or more")
        if self.start_segments < 1:
            raise ProgressiveInputError(f"start_segments must be at least 1, got {self.start_segments}")
        if self.bound not in ("interval", "linear"):
            raise ProgressiveInputError(f"bound must be 'interval' or 'linear', got {self.bound!r}")
        if self.focus_share is not None and not 0.0 < self.focus_share <= 1.0:
            raise ProgressiveInputError(f"focus_share must lie in (0, 1] or be None, got {self.focus_share}")
        if not 0.0 < self.refine_share <= 1.0:
            raise ProgressiveInputError(f"refine_share must lie in (0, 1], got {self.refine_share}")


def run_refinement(gm: torch.fx.GraphModule, plan: RefinementPlan, x: torch.Tensor, source,
                   config: ProgressiveConfig, given: Optional[Mapping[str, torch.Tensor]] = None) -> ProgressiveReport:
    t0 = time.perf_counter()
    n = int(x.shape[0]) if given is None else int(next(iter(given.values())).shape[0])
    needed = needed_nodes(plan, given or {})
    groups = [g for name, g in plan.groups.items() if name in needed]
    tensors = sorted({t for g in groups for t in g.tensors})
    full = {t: source.levels(t) for t in tensors}
    # segments another version already fetched cost nothing: start each tensor at least that deep
    levels = {t: min(max(config.start_segments, source.free_levels(t)), full[t]) for t in tensors}
    bytes_total = sum(source.total_bytes(t) for t in tensors)
    base_read = source.bytes_read
    labels = np.zeros((n, config.top_k), dtype=np.int64)
    decided_bytes = np.zeros(n, dtype=np.float64)
    remaining = torch.arange(n)
    stats: list[LevelStat] = []
    cache: dict[tuple, AffineParams] = {}
    refined: tuple[str, ...] = ()
    exact_records = 0
    ctx = Ctx(plan.u_ref)
    linear_log: list[dict] = []
    step = 0
    while len(remaining):
        if all(levels[t] >= full[t] for t in tensors):
            out = _reference(gm, plan, source, tensors, _rows(x, remaining), _rows_given(given, remaining))
            labels[remaining.numpy()] = torch.topk(out, config.top_k, dim=1).indices.numpy()
            read = source.bytes_read - base_read
            decided_bytes[remaining.numpy()] = read
            exact_records = len(remaining)
            stats.append(_stat(step, levels, full, refined, read, bytes_total, len(remaining), len(remaining),
                               n - 0, n))
            break
        params = _params(groups, source, levels, plan.u_ref, cache)
        contrib: dict[str, float] = {}
        linear_stats = {"linear": 0, "tightened": 0, "futile": None, "neurons": 0, "hopeless": 0,
                        "gain": _best_gain(source, tensors, levels, full) if config.exact_when_hopeless else None}
        certain, lab = _certify_rows(plan, x, given, remaining, params, ctx, config, contrib, linear_stats)
        done = remaining[certain]
        labels[done.numpy()] = lab[certain].numpy()
        read = source.bytes_read - base_read
        decided_bytes[done.numpy()] = read
        decided_so_far = n - len(remaining) + int(certain.sum())
        stats.append(_stat(step, levels, full, refined, read, bytes_total, len(remaining), int(certain.sum()),
                           decided_so_far, n))
        if config.bound == "linear":
            linear_log.append(dict(linear_stats, step=step))
        remaining = remaining[~certain]
        if not len(remaining):
            break
        if linear_stats["hopeless"]:
            # some record will need every tensor exact, so the version reads them all anyway: read
            # them now and let the exact network decide, instead of bounding level after level
            refined = tuple(g.name for g in groups if any(levels[t] < full[t] for t in g.tensors))
            for t in tensors:
                levels[t] = full[t]
            step += 1
            continue
        refined = _choose(plan, groups, source, levels, full, params, x, remaining, given, config,
                          contrib if config.bound == "linear" else None)
        for gname in refined:
            for t in plan.groups[gname].tensors:
                levels[t] = min(levels[t] + 1, full[t])
        step += 1
    bytes_read = source.bytes_read - base_read
    return ProgressiveReport(
        n_records=n, top_k=config.top_k, labels=labels, bytes_read=bytes_read, bytes_total=bytes_total,
        levels=tuple(stats), exact_records=exact_records,
        record_bytes_fraction=float(decided_bytes.mean() / bytes_total) if n and bytes_total else 1.0,
        time_s=time.perf_counter() - t0,
        exact_only=tuple(t for t in tensors if source.exact_only(t)),
        head_from=next(iter(given)) if given else None,
        extra={"bound": config.bound, "linear_steps": linear_log} if config.bound == "linear" else {"bound": config.bound})


def certified_at(plan: RefinementPlan, x: Optional[torch.Tensor], source, levels: Mapping[str, int],
                 config: ProgressiveConfig, given: Optional[Mapping[str, torch.Tensor]] = None) -> torch.Tensor:
    """Which records (bool [N]) the bounds certify with every tensor read at ``levels`` (clamped to its
    full level): one step of :func:`run_refinement` -- boxes, linear bounds, focused tightening --
    without its cost shortcut (exact_when_hopeless). For the benchmark's oracle: the prefix level at
    which each record's label is certified."""
    n = int(x.shape[0]) if given is None else int(next(iter(given.values())).shape[0])
    needed = needed_nodes(plan, given or {})
    groups = [g for name, g in plan.groups.items() if name in needed]
    clamped = {t: min(levels[t], source.levels(t)) for g in groups for t in g.tensors}
    params = _params(groups, source, clamped, plan.u_ref, {})
    log = {"linear": 0, "tightened": 0, "futile": None, "neurons": 0, "hopeless": 0, "gain": None}
    certain, _ = _certify_rows(plan, x, given, torch.arange(n), params, Ctx(plan.u_ref), config, {}, log)
    return certain


def _certify_rows(plan, x, given, rows: torch.Tensor, params, ctx, config: ProgressiveConfig,
                  contrib: dict, linear_stats: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(certain [len(rows)], top-k labels) of ``rows`` with the tensors at ``params``' levels, batch by
    batch: boxes, then linear bounds (and focused tightening) for the records the boxes leave open."""
    certain_all, labels_all = [], []
    with torch.no_grad():
        for lo in range(0, len(rows), config.batch_size):
            idx = rows[lo:lo + config.batch_size]
            env: dict = {}
            box = propagate(plan, _rows(x, idx), params, ctx, given=_rows_given(given, idx), env=env)
            n_classes = box.c.shape[1]
            if config.top_k > n_classes:
                raise ProgressiveInputError(f"top {config.top_k} asked but the network has {n_classes} "
                                            "outputs; pass a smaller --top")
            ok, lab = certify_topk(box, config.top_k)
            if config.bound == "linear" and not bool(ok.all()):
                ok, lab = _linear_certify(plan, x, given, idx, ok, lab, params, ctx, config, contrib, linear_stats,
                                          env)
            certain_all.append(ok)
            labels_all.append(lab)
    return torch.cat(certain_all), torch.cat(labels_all)


def _linear_certify(plan, x, given, idx, ok, lab, params, ctx, config, contrib, log, env=None):
    """Records the boxes left undecided: linear bounds (cheap), then with tightening (costly, given up
    at a level where too many neurons straddle a kink). Accumulates the weights' share of each
    undecided record's binding margin per group into ``contrib`` (the refinement's guide)."""
    ok, lab = ok.clone(), lab.clone()
    focus = None
    for tighten in ((False, True) if config.tighten else (False,)):
        rest = (~ok).nonzero(as_tuple=True)[0]
        if not len(rest) or (tighten and (log["futile"] or log["hopeless"])):
            break
        rows = idx[rest]
        try:
            lp = LinearPass(plan, _rows(x, rows), params, ctx, _rows_given(given, rows), tighten=tighten,
                            max_straddle=config.max_straddle, focus=focus,
                            boxes=None if tighten or env is None else _box_rows(env, rest))
        except Futile as exc:
            log["futile"] = str(exc)
            break
        c, labels, _, parts = lp.certify(config.top_k, want_contrib=not tighten)
        ok[rest] = c
        lab[rest[c]] = labels[c]
        if not tighten and log["gain"] is not None:
            log["hopeless"] += _hopeless(lp.margin_ratio[~c], log["gain"])
        if not tighten and config.tighten and config.focus_share is not None and not log["hopeless"]:
            # the next pass tightens, for the records still open (in this order), only what can matter
            focus = lp.focus((~c).nonzero(as_tuple=True)[0], config.focus_share)
        log["tightened" if tighten else "linear"] += int(c.sum())
        log["neurons"] += lp.tightened
        for g, v in parts.items():          # the attribution of the untightened pass guides refinement
            contrib[g] = contrib.get(g, 0.0) + float(v[~c].sum())
    return ok, lab


def _best_gain(source, tensors, levels, full) -> Optional[float]:
    """The largest factor by which any tensor's read error can still shrink before it is exact:
    2^-(mantissa bits between its current level and its last intermediate one), None when no
    tensor has an intermediate level left (or one still lacks its exponent or sign)."""
    best = 0
    for t in tensors:
        if levels[t] >= full[t] - 1:
            continue
        bits = source.mantissa_bits(t)
        if bits is None:
            return None
        have, last = bits[levels[t] - 1], bits[full[t] - 2]
        if have is None:
            return None
        best = max(best, last - have)
    return 2.0 ** -best if best else None


def _hopeless(ratio: torch.Tensor, gain: float) -> int:
    """Records whose bound/room ratio stays above 1 even if the bound shrank with the *square* of the
    best gain left before the last segment (an optimistic extrapolation: a bound first-order in the
    weights' error shrinks with the gain itself). Such a record is decided only once every tensor it
    depends on is exact. A heuristic about cost only: labels stay the exact network's either way."""
    return int((ratio * gain * gain > 1.0).sum())


def _box_rows(env: dict, rows: torch.Tensor) -> dict:
    """The box pass's boxes of some of its records (python values, e.g. sizes, are left out)."""
    return {k: Box(v.c[rows], v.r[rows]) for k, v in env.items() if isinstance(v, Box)}


def _rows(x: Optional[torch.Tensor], idx: torch.Tensor) -> Optional[torch.Tensor]:
    return None if x is None else x[idx]


def _rows_given(given, idx):
    return {k: v[idx] for k, v in given.items()} if given else None


def _stat(step, levels, full, refined, read, total, records, certified, decided, n) -> LevelStat:
    mean_seg = float(np.mean([levels[t] for t in levels])) if levels else 0.0
    return LevelStat(step, round(mean_seg, 3), tuple(refined), int(read),
                     read / total if total else 1.0, int(records), int(certified), decided / n if n else 1.0)


def _params(groups, source, levels, u_ref, cache) -> dict[str, AffineParams]:
    read = group_reader(source, levels)
    out = {}
    for g in groups:
        key = (g.name,) + tuple(levels[t] for t in g.tensors)
        if key not in cache:
            cache[key] = affine_params(g, read, u_ref)
        out[g.name] = cache[key]
    return out


def _next_bytes(source, g, levels, full) -> int:
    return sum(source.level_bytes(t)[levels[t]] for t in g.tensors if levels[t] < full[t])


def _choose(plan, groups, source, levels, full, params, x, remaining, given, config,
            linear_contrib: Optional[dict] = None) -> tuple[str, ...]:
    """Groups to raise by one segment: most attributed output width per byte of their next segment
    (linear bounds: each group's weight-interval share of the undecided records' binding margins)."""
    open_groups = [g for g in groups if any(levels[t] < full[t] for t in g.tensors)]
    if config.uniform or len(open_groups) <= 1:
        return tuple(g.name for g in open_groups)
    if linear_contrib and all(np.isfinite(v) for v in linear_contrib.values()) and \
            sum(linear_contrib.get(g.name, 0.0) for g in open_groups) > 0:
        return _greedy(open_groups, {g.name: linear_contrib.get(g.name, 0.0) for g in open_groups},
                       source, levels, full, config)
    sample = remaining[: config.sensitivity_records]
    scales = {g.name: torch.ones((), dtype=torch.float64, requires_grad=True) for g in open_groups}
    box = propagate(plan, _rows(x, sample), params, Ctx(plan.u_ref, sound=False), scales=scales,
                    given=_rows_given(given, sample))
    k = min(config.top_k + 1, box.c.shape[1])
    top = torch.topk(box.c.detach(), k, dim=1).indices
    objective = torch.gather(box.r, 1, top).sum()
    contrib: dict[str, float] = {}
    if torch.isfinite(objective) and objective.requires_grad:
        objective.backward()
        contrib = {name: float(s.grad) if s.grad is not None else 0.0 for name, s in scales.items()}
    if not contrib or not all(np.isfinite(v) for v in contrib.values()) or sum(contrib.values()) <= 0:
        # unbounded widths (unknown signs, possible infinities): raise every group whose own
        # parameters are unbounded, or all of them when none is
        unbounded = [g.name for g in open_groups
                     if not (torch.isfinite(params[g.name].dw).all() and torch.isfinite(params[g.name].db).all())]
        return tuple(unbounded or [g.name for g in open_groups])
    return _greedy(open_groups, contrib, source, levels, full, config)


def _greedy(open_groups, contrib, source, levels, full, config) -> tuple[str, ...]:
    order = sorted(open_groups, key=lambda g: contrib[g.name] / max(_next_bytes(source, g, levels, full), 1),
                   reverse=True)
    total = sum(contrib.values())
    chosen, covered = [], 0.0
    for g in order:
        chosen.append(g.name)
        covered += contrib[g.name]
        if covered >= config.refine_share * total:
            break
    return tuple(chosen)


def _reference(gm, plan, source, tensors, x, given) -> torch.Tensor:
    """The full-precision network itself on the given records, with the exact weights."""
    module = exact_module(gm, source, tensors)
    with torch.no_grad():
        if not given:
            return module(x)
        needed = needed_nodes(plan, given)
        env = {node: None for node in module.graph.nodes if node.name not in needed}
        for node in module.graph.nodes:
            if node.name in given:
                env[node] = given[node.name]
            elif node.op == "placeholder":
                env[node] = None
        return torch.fx.Interpreter(module).run(None, initial_env=env)


def exact_module(gm: torch.fx.GraphModule, source, tensors) -> torch.fx.GraphModule:
    module = copy.deepcopy(gm).eval()
    state = module.state_dict()
    exact = {t: source.exact(t).to(state[t].dtype) for t in tensors if t in state}
    module.load_state_dict(exact, strict=False)
    return module
