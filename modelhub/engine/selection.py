"""Model selection over a frozen-prefix tree: plan, extract once, train fused.

``run_selection`` is the library core of ``evaluate``: candidates (a network
and an EvalConfig each) -> one prefix tree -> a materialization plan -> one
staged extraction pass for the records not stored yet -> heads grouped by the
node they read, each group trained in one pass per epoch -> keep-top pruning.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .backend import BackendOptions, open_executor, resolve_backend
from .chain import MODE_SENSITIVE, Stage, split_into_stages, trainable_part, whole_network
from .config import EvalConfig
from .data import DataView, Preprocessing, augment
from .errors import ConfigError, SplitError
from .extract import ChunkWriter, Collector, ExtractionStats, batch_size_for, extract
from .features import FeatureStore
from .fingerprint import input_fingerprint, stage_fingerprint
from .planner import ExtractionPlan, PlanCosts, PlanNode, solve
from .profile import DiskThroughput, NodeProfile, measure_disk, profile_tree
from .spec import KeepRule
from .train import CandidateTrainer, frozen_layers, layer_of, lower_is_better, metric_name, stage_layers
from .tree import PrefixTree

Progress = Callable[..., None]


@dataclass(frozen=True, eq=False)
class CandidateModel:
    cid: str
    model: nn.Module
    config: EvalConfig


@dataclass(frozen=True, eq=False)
class CandidateOutcome:
    cid: str
    status: str                                   # "finished" | "pruned"
    metrics: dict[str, float]                     # latest value of each metric
    series: tuple[tuple[str, int, float], ...]    # (name, step, value)
    steps: int
    epochs: int
    frozen_stages: int
    boundary: str                                 # prefix-tree node its head reads
    model: nn.Module                              # the trained network (a copy of the input)
    snapshots: tuple = ()                         # (step, {id(tensor): copy}) per epoch end, see train.py
    step_seconds: float = 0.0                     # wall time inside its optimizer steps


@dataclass(frozen=True)
class ReuseStats:
    prefix_nodes: int                 # distinct frozen-prefix nodes across candidates
    candidate_prefix_stages: int      # sum of frozen stages over candidates (without sharing)
    materialized: tuple[str, ...]     # nodes stored on disk by the plan
    records_extracted: int            # records pushed through stages to materialize
    records_recomputed: int           # records pushed through stages again for non-stored features
    records_loaded: int               # feature rows loaded from the store for training
    records_preexisting: int          # stored rows of planned nodes from earlier runs (not recomputed)
    bytes_written: int
    bytes_read: int
    fused_groups: tuple[int, ...]     # heads per training group (one pass per epoch each)
    extraction_batch_size: int
    oom_backoffs: int
    planned_s: float                  # planner estimate with its choice
    recompute_s: float                # planner estimate with nothing stored
    backend: str = "local"            # where extraction and training ran (local | ray)
    workers: tuple[dict, ...] = ()    # ray: per worker chunks, records, bytes read/written, seconds
    extract_s: float = 0.0            # wall seconds of the extraction passes (step 3)
    train_s: float = 0.0              # wall seconds of training and validation (step 4)
    warnings: tuple[str, ...] = ()    # e.g. a network trained without reuse because it does not trace


@dataclass(frozen=True, eq=False)
class SelectionResult:
    outcomes: tuple[CandidateOutcome, ...]
    reuse: ReuseStats
    plan: ExtractionPlan

    def best(self, metric: str = "loss") -> CandidateOutcome:
        name = metric_name(metric)
        finished = [o for o in self.outcomes if o.status == "finished"]
        sign = 1 if lower_is_better(name) else -1
        return min(finished, key=lambda o: sign * o.metrics.get(name, math.inf * sign))


def pick_device(setting: str = "auto") -> torch.device:
    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if setting in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    raise ConfigError(f"device {setting!r} is not available here; use device = \"auto\" or \"cpu\"")


def input_dtype(data: DataView) -> str:
    """The root fingerprint's dtype: packed inputs name their layout (different layouts, different roots)."""
    layout = data.layout
    return str(data.x.dtype) if layout is None else f"packed{layout.describe()}"


def frozen_prefix_length(stages: list[Stage], cfg: EvalConfig, frozen: frozenset[str] = frozenset()) -> int:
    """Leading stages whose parameters all have lr 0; a parameter-free stage joins unless it
    behaves differently in training mode (dropout, batch norm) and is not part of a frozen
    block (``frozen``: frozen_layers of the network), since training would then use that mode."""
    p = 0
    for s in stages:
        params = s.named_parameters()
        if params:
            if any(cfg.lr_multiplier(layer_of(n)) != 0 for n, _ in params):
                break
        elif any(isinstance(m, MODE_SENSITIVE) and name not in frozen for name, m in stage_layers(s)):
            break
        p += 1
    return p


@dataclass(eq=False)
class _Prepared:
    cand: CandidateModel
    model: nn.Module
    stages: list[Stage]
    frozen: int
    boundary: str
    trainer: CandidateTrainer
    epochs: int


@dataclass(eq=False)
class _Group:
    boundary: str
    members: list[_Prepared]
    augmentation: Any = None
    _cache: tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] | None = None
    epochs_served: int = 0


def _cached_profile(store: FeatureStore | None, tree: PrefixTree, data: DataView, device: torch.device,
                    itemsize: int) -> dict[str, NodeProfile]:
    """Stage timings are measured once per (node, device, feature size) and kept in the store,
    so later queries and labeling cycles do not pay for profiling again."""
    tag = f"{device.type}/{itemsize}"
    known = store.load_meta("profile") if store is not None else {}
    # a node's compute time is from its parent in this (compressed) tree: the edge is the key
    edge = {k: f"{tag}/{tree.nodes[k].parent}>{k}" for k in tree.nodes}
    cached = {k: known.get(edge[k]) for k in tree.nodes}
    if all(v is not None for v in cached.values()):
        return {k: NodeProfile(*v) for k, v in cached.items()}
    prof = profile_tree(tree, data, device, itemsize)
    if store is not None:
        known.update({edge[k]: [p.compute_s, p.bytes_per_record, p.activation_bytes] for k, p in prof.items()})
        store.save_meta("profile", known)
    return prof


def _cached_disk(store: FeatureStore) -> DiskThroughput:
    known = store.load_meta("disk")
    if "read" in known and "write" in known:
        return DiskThroughput(known["read"], known["write"])
    disk = measure_disk(store.root)
    store.save_meta("disk", {"read": disk.read_bytes_per_s, "write": disk.write_bytes_per_s})
    return disk


def run_selection(candidates: list[CandidateModel], data: DataView, *, store: FeatureStore | None,
                  keep: KeepRule | None = None, storage_budget: int | None = None,
                  memory_budget: int = 256 << 20, feature_dtype: str = "float32",
                  device: torch.device | None = None, memory_cache: int = 1 << 30,
                  extraction_batch_size: int | None = None, materialize: str = "auto",
                  progress: Progress | None = None, backend: str | BackendOptions | None = None,
                  chunk_records: int = 8192) -> SelectionResult:
    """Train and validate every candidate, reusing frozen-prefix outputs.

    ``materialize``: "auto" (the planner decides under ``storage_budget``), "all"
    (store every prefix node: the materialize-every-layer baseline) or "none".
    ``backend``: "local" (default; DLV_BACKEND when None) or "ray" / BackendOptions:
    extraction on a Ray actor pool, one Ray task per fused group (ray_backend.py);
    the plan and the results are the same. ``chunk_records``: records per feature chunk.
    """
    if not candidates:
        raise ConfigError("there are no candidates to evaluate; check the sub-query and the vary grid")
    device = device or pick_device(candidates[0].config.device)
    emit = progress or (lambda *a, **k: None)
    opts = resolve_backend(backend)
    executor = open_executor(opts)     # None: everything runs here
    n = data.n
    for field_name in ("loss", "val_fraction"):
        values = {getattr(c.config, field_name) for c in candidates}
        if len(values) > 1:
            raise ConfigError(
                f"candidates differ in {field_name} ({', '.join(map(str, sorted(values)))}); they are compared "
                f"on one validation split, so vary {field_name} in separate evaluate queries"
            )
    # one split for all candidates (heads compare on the same records)
    train_idx, val_idx = data.split(candidates[0].config.val_fraction)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ConfigError(
            f"dataset {data.name or data.uid} has {n} records, too few for a train/validation split; "
            "add records or change val_fraction"
        )
    t_idx, v_idx = torch.from_numpy(train_idx), torch.from_numpy(val_idx)

    # 1. the multi-model graph ---------------------------------------------------------
    tree = PrefixTree()
    prepared: list[_Prepared] = []
    warnings: list[str] = []
    fingerprints: dict[int, list[str]] = {}
    record_shape = tuple(int(s) for s in data.x.shape[1:])
    for cand in candidates:
        model = copy.deepcopy(cand.model)
        pre = Preprocessing.from_config(cand.config)
        data.check_preprocessing(pre, cand.config.augment)
        try:
            stages = split_into_stages(model, data.example(pre))
        except SplitError as exc:   # it still trains, without reuse: say why
            warnings.append(f"candidate {cand.cid}: {exc}")
            emit("warning", message=warnings[-1])
            stages = whole_network(model, data.layout)
        frozen = frozen_layers(model, cand.config)
        p = frozen_prefix_length(stages, cand.config, frozen)
        if feature_dtype != "float32" and any(s.packed_out for s in stages[:p]):
            raise ConfigError(
                f"feature_dtype {feature_dtype} would round the packed values (several tensors, or non-float "
                "ones) that cross this network's frozen prefix; use feature_dtype = \"float32\""
            )
        root = input_fingerprint(pre.describe(), record_shape, input_dtype(data))
        # candidates copied from one source share its weights: hash each stage once
        known = fingerprints.setdefault(id(cand.model), [])
        known.extend(stage_fingerprint(s) for s in stages[len(known):p])
        keys = tree.add_chain(root, pre, stages[:p], known[:p])
        trainer = CandidateTrainer(cand.cid, trainable_part(stages, p), cand.config, len(train_idx), device,
                                   frozen)
        epochs = math.ceil(trainer.total_steps / math.ceil(len(train_idx) / cand.config.batch_size))
        prepared.append(_Prepared(cand, model, stages, p, keys[-1], trainer, epochs))
    prefix_nodes = len([k for k in tree.nodes if tree.nodes[k].parent])
    stored = {k: (store.stored_records(k, data.uid, feature_dtype) if store and tree.nodes[k].parent else 0)
              for k in tree.nodes}
    # only where a candidate stops, a branch or stored features: fewer nodes to profile, plan and
    # pass through (a residual block is not cut in three where no candidate stops inside it)
    tree.compress({pr.boundary for pr in prepared} | {k for k, v in stored.items() if v})
    stored = {k: stored[k] for k in tree.nodes}
    for node in tree.nodes.values():
        if node.stage is not None:
            node.stage.module.to(device).eval()

    # 2. plan ---------------------------------------------------------------------------
    itemsize = np.dtype(feature_dtype).itemsize
    prof = _cached_profile(store, tree, data, device, itemsize)
    demand: dict[str, int] = {}
    for pr in prepared:
        if not pr.cand.config.augment.active:
            demand[pr.boundary] = max(demand.get(pr.boundary, 0), pr.epochs)
    plan_nodes = [PlanNode(k, tree.nodes[k].parent, prof[k].compute_s, prof[k].bytes_per_record,
                           demand.get(k, 0), min(stored[k], n)) for k in tree.nodes]
    if materialize not in ("auto", "all", "none"):
        raise ConfigError(f"materialize must be auto, all or none, got {materialize!r}")
    if store is not None and materialize == "all":
        every = frozenset(k for k in tree.nodes if tree.nodes[k].parent)
        plan = ExtractionPlan(every, 0.0, 0.0, sum(n * prof[k].bytes_per_record for k in every))
    elif store is not None and materialize == "auto":
        disk = _cached_disk(store)
        plan = solve(plan_nodes, PlanCosts(disk.read_bytes_per_s, disk.write_bytes_per_s, n,
                                           storage_budget, memory_cache))
    else:
        plan = solve(plan_nodes, PlanCosts(1e9, 1e9, n, 0, memory_cache))
    emit("plan", plan=plan, nodes=len(tree.nodes))

    # 3. staged extraction of what the plan stores and is not stored yet ----------------
    t_extract = time.perf_counter()
    ext = ExtractionStats()
    rec = ExtractionStats()
    act = max((prof[k].activation_bytes for k in tree.nodes), default=4)
    xbs = extraction_batch_size or batch_size_for(act, memory_budget)
    available = {k: feature_dtype for k in tree.nodes if stored[k] >= n}
    records_loaded = 0
    if store is not None:
        for root in tree.roots:
            by_lo: dict[int, set[str]] = {}
            for k in plan.materialize:
                if tree.nodes[k].root == root and stored[k] < n:
                    by_lo.setdefault(stored[k], set()).add(k)
            for lo, targets in sorted(by_lo.items()):
                emit("extract", nodes=len(targets), records=n - lo)
                if executor is not None:   # the same chunks, written by a pool of Ray actors
                    executor.extract(tree, targets, data, lo, n, store=store, dtype=feature_dtype,
                                     batch_size=xbs, chunk_records=chunk_records, stats=ext,
                                     available=available)
                else:
                    writer = ChunkWriter(store, data.uid, feature_dtype, chunk_records)
                    extract(tree, targets, data, lo, n, sink=writer, batch_size=xbs, device=device,
                            stats=ext, store=store, available=available)
                    writer.close()
                xbs = ext.last_batch_size or xbs
        for k in plan.materialize:
            available[k] = feature_dtype

    extract_s = time.perf_counter() - t_extract

    # 4. fused training groups ---------------------------------------------------------------
    groups: dict[Any, _Group] = {}
    for pr in prepared:
        aug = pr.cand.config.augment
        gkey: Any = pr.boundary if not aug.active else ("aug", pr.boundary, aug, pr.cand.config.seed)
        groups.setdefault(gkey, _Group(pr.boundary, [], aug if aug.active else None)).members.append(pr)
    labels = data.labels(candidates[0].config.loss)
    y_train, y_val = labels[t_idx], labels[v_idx]

    def group_features(g: _Group) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        nonlocal records_loaded
        if g._cache is not None:
            return g._cache
        key = g.boundary
        cacheable = True
        if g.augmentation is not None:
            seed = g.members[0].cand.config.seed
            gen = torch.Generator().manual_seed(seed * 1_000_003 + g.epochs_served)
            col = Collector()
            extract(tree, {key}, data, 0, n, sink=col, batch_size=xbs, device=device, stats=rec,
                    transform=lambda x, _a: augment(x, g.augmentation, gen))
            feats_aug = col.result(key)
            col = Collector()
            extract(tree, {key}, data, 0, n, sink=col, batch_size=xbs, device=device, stats=rec,
                    store=store, available=available)
            clean = col.result(key)
            g.epochs_served += 1
            return feats_aug[t_idx], (clean[v_idx], y_val)
        if tree.is_root(key):
            feats = tree.nodes[key].preprocessing.apply(data.x)
        elif key in available and store is not None:
            feats = torch.from_numpy(store.read(key, data.uid, available[key], 0, n)).float()
            records_loaded += n
            cacheable = feats.numel() * itemsize <= memory_cache
        else:
            col = Collector()
            extract(tree, {key}, data, 0, n, sink=col, batch_size=xbs, device=device, stats=rec,
                    store=store, available=available)
            feats = col.result(key).cpu()
            cacheable = False    # not stored: recomputed every epoch (the planner's choice)
        out = (feats[t_idx], (feats[v_idx], y_val))
        if cacheable:
            g._cache = out
        return out

    def remote_groups(members: set[str], stop_at: int | None) -> set[int]:
        """Ray: one task per fused group; augmented groups (fresh inputs every epoch) stay here."""
        from .ray_backend import GroupJob, StoredFeatures
        jobs = []
        for g in groups.values():
            trainers = [pr.trainer for pr in g.members if pr.cand.cid in members and not pr.trainer.done
                        and (stop_at is None or pr.trainer.step < stop_at)]
            if not trainers or g.augmentation is not None:
                continue
            if g.boundary in available and store is not None and not tree.is_root(g.boundary):
                source: Any = StoredFeatures(g.boundary, available[g.boundary], n)   # read by the task
            else:
                source = group_features(g)     # the input, or prefix outputs recomputed here
            jobs.append((g, GroupJob(g.boundary, trainers, source)))
        executor.train([j for _, j in jobs], store=store, uid=data.uid, split=(t_idx, v_idx, y_val),
                       y_train=y_train, stop_at=stop_at, device=device)
        for g, job in jobs:
            emit("epoch", group=g.boundary, heads=len(job.trainers))
        return {id(g) for g, _ in jobs}

    def run_groups(members: set[str], stop_at: int | None) -> None:
        done_remotely = remote_groups(members, stop_at) if executor is not None else set()
        for g in groups.values():
            if id(g) in done_remotely:
                continue
            while True:
                active = [pr.trainer for pr in g.members if pr.cand.cid in members
                          and not pr.trainer.done and (stop_at is None or pr.trainer.step < stop_at)]
                if not active:
                    break
                train_f, val = group_features(g)
                for t in active:
                    t.train_round(train_f, y_train, stop_at, val)
                emit("epoch", group=g.boundary, heads=len(active))

    t_train = time.perf_counter()
    alive = {pr.cand.cid for pr in prepared}
    pruned: set[str] = set()
    if keep is not None and keep.k < len(prepared):
        run_groups(alive, keep.after)
        for g in groups.values():
            _, val = group_features(g)
            for pr in g.members:
                pr.trainer.record_validation(*val)
        name = metric_name(keep.metric)
        sign = 1 if lower_is_better(name) else -1
        ranked = sorted(prepared, key=lambda pr: sign * pr.trainer.latest(name))
        pruned = {pr.cand.cid for pr in ranked[keep.k:]}
        alive -= pruned
        emit("keep", kept=sorted(alive), pruned=sorted(pruned))
    run_groups(alive, None)

    train_s = time.perf_counter() - t_train
    outcomes = []
    for pr in prepared:
        t = pr.trainer
        latest: dict[str, float] = {}
        for name, _, v in t.series:
            latest[name] = v
        pr.model.to(memory_format=torch.contiguous_format)     # trainers may have used channels_last
        outcomes.append(CandidateOutcome(
            pr.cand.cid, "pruned" if pr.cand.cid in pruned else "finished", latest, tuple(t.series),
            t.step, t.epoch, pr.frozen, pr.boundary, pr.model, tuple(t.snapshots), t.step_seconds))
    reuse = ReuseStats(
        prefix_nodes=prefix_nodes,
        candidate_prefix_stages=sum(pr.frozen for pr in prepared),
        materialized=tuple(sorted(plan.materialize)),
        records_extracted=sum(ext.stage_records.values()),
        records_recomputed=sum(rec.stage_records.values()),
        records_loaded=records_loaded + (executor.records_loaded if executor is not None else 0),
        records_preexisting=sum(min(stored[k], n) for k in plan.materialize),
        bytes_written=store.bytes_written if store else 0,
        bytes_read=(store.bytes_read if store else 0) + (executor.worker_bytes_read if executor is not None else 0),
        fused_groups=tuple(len(g.members) for g in groups.values()),
        extraction_batch_size=xbs, oom_backoffs=ext.oom_backoffs + rec.oom_backoffs,
        planned_s=plan.estimated_s, recompute_s=plan.recompute_s,
        backend=opts.name, workers=executor.worker_stats() if executor is not None else (),
        extract_s=extract_s, train_s=train_s, warnings=tuple(warnings),
    )
    return SelectionResult(tuple(outcomes), reuse, plan)
