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
from typing import Any

import numpy as np
import torch
from torch import nn

from .backend import open_executor, resolve_backend
from .chain import MODE_SENSITIVE, Stage, split_into_stages, trainable_part, whole_network
from .config import EvalConfig
from .data import DataView, Preprocessing
from .errors import ConfigError, SplitError
from .executor import BackendOptions, Executor
from .extract import ExtractionStats, batch_size_for
from .features import FeatureStore
from .groups import GroupFeatures, Progress, TrainingGroup
from .fingerprint import input_fingerprint, stage_fingerprint
from .planner import ExtractionPlan, PlanCosts, PlanNode, solve
from .profile import DiskThroughput, NodeProfile, measure_disk, profile_tree
from .spec import KeepRule
from .train import CandidateTrainer, frozen_layers, layer_of, lower_is_better, metric_name, stage_layers
from .tree import PrefixTree


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
    """A candidate cut into stages, its frozen prefix in the tree and its trainer."""
    cand: CandidateModel
    model: nn.Module
    stages: list[Stage]
    frozen: int
    boundary: str
    trainer: CandidateTrainer
    epochs: int


@dataclass(frozen=True, eq=False)
class _Run:
    """What every stage of one run_selection call works with."""
    data: DataView
    store: FeatureStore | None
    feature_dtype: str
    device: torch.device
    executor: Executor
    emit: Progress

    @property
    def itemsize(self) -> int:
        return np.dtype(self.feature_dtype).itemsize


@dataclass(frozen=True, eq=False)
class _Split:
    """One train/validation split for all candidates (heads compare on the same records)."""
    train_idx: torch.Tensor
    val_idx: torch.Tensor


@dataclass(eq=False)
class _PrefixGraph:
    """Stage 1: every candidate's frozen prefix in one (compressed) prefix tree."""
    tree: PrefixTree
    prepared: list[_Prepared]
    stored: dict[str, int]            # node -> records already in the store
    prefix_nodes: int                 # distinct frozen-prefix nodes before compression
    warnings: list[str]


@dataclass(frozen=True, eq=False)
class _Materialized:
    """Stage 3: what the plan stored, and the extraction work it took."""
    available: dict[str, str]         # node -> dtype of nodes fully stored
    stats: ExtractionStats
    batch_size: int                   # the extraction batch size after any out-of-memory backoff
    seconds: float


@dataclass(frozen=True, eq=False)
class _Trained:
    """Stage 4: the fused groups after training, and which candidates keep-top pruned."""
    groups: list[TrainingGroup]
    features: GroupFeatures
    pruned: frozenset[str]
    seconds: float


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

    Stages: (1) the multi-model prefix graph, (2) the materialization plan, (3) extraction
    of what the plan stores, (4) fused training of the candidates with keep-top pruning,
    (5) the report.
    """
    if not candidates:
        raise ConfigError("there are no candidates to evaluate; check the sub-query and the vary grid")
    run = _Run(data, store, feature_dtype, device or pick_device(candidates[0].config.device),
               open_executor(resolve_backend(backend)), progress or (lambda *a, **k: None))
    split = _split(candidates, data)
    graph = _prefix_graph(run, candidates, split)
    prof = _cached_profile(store, graph.tree, data, run.device, run.itemsize)
    plan = _plan(run, graph, prof, materialize, storage_budget, memory_cache)
    run.emit("plan", plan=plan, nodes=len(graph.tree.nodes))
    done = _materialize(run, graph, plan, prof, memory_budget, extraction_batch_size, chunk_records)
    trained = _train(run, graph, done, split, keep, memory_cache)
    return _report(run, graph, plan, done, trained)


def _split(candidates: list[CandidateModel], data: DataView) -> _Split:
    for field_name in ("loss", "val_fraction"):
        values = {getattr(c.config, field_name) for c in candidates}
        if len(values) > 1:
            raise ConfigError(
                f"candidates differ in {field_name} ({', '.join(map(str, sorted(values)))}); they are compared "
                f"on one validation split, so vary {field_name} in separate evaluate queries"
            )
    train_idx, val_idx = data.split(candidates[0].config.val_fraction)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ConfigError(
            f"dataset {data.name or data.uid} has {data.n} records, too few for a train/validation split; "
            "add records or change val_fraction"
        )
    return _Split(torch.from_numpy(train_idx), torch.from_numpy(val_idx))


def _prefix_graph(run: _Run, candidates: list[CandidateModel], split: _Split) -> _PrefixGraph:
    """Stage 1: cut each candidate into stages, add its frozen prefix to one tree, and compress
    the tree to the nodes that matter."""
    data, store, feature_dtype, device = run.data, run.store, run.feature_dtype, run.device
    tree = PrefixTree()
    prepared: list[_Prepared] = []
    warnings: list[str] = []
    fingerprints: dict[int, list[str]] = {}
    record_shape = tuple(int(s) for s in data.x.shape[1:])
    n_train = len(split.train_idx)
    for cand in candidates:
        model = copy.deepcopy(cand.model)
        pre = Preprocessing.from_config(cand.config)
        data.check_preprocessing(pre, cand.config.augment)
        try:
            stages = split_into_stages(model, data.example(pre))
        except SplitError as exc:   # it still trains, without reuse: say why
            warnings.append(f"candidate {cand.cid}: {exc}")
            run.emit("warning", message=warnings[-1])
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
        trainer = CandidateTrainer(cand.cid, trainable_part(stages, p), cand.config, n_train, device, frozen)
        epochs = math.ceil(trainer.total_steps / math.ceil(n_train / cand.config.batch_size))
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
    return _PrefixGraph(tree, prepared, stored, prefix_nodes, warnings)


def _plan(run: _Run, graph: _PrefixGraph, prof: dict[str, NodeProfile], materialize: str,
          storage_budget: int | None, memory_cache: int) -> ExtractionPlan:
    """Stage 2: which prefix nodes to store, from the measured stage costs and the heads' demand."""
    tree, stored, store, n = graph.tree, graph.stored, run.store, run.data.n
    demand: dict[str, int] = {}
    for pr in graph.prepared:
        if not pr.cand.config.augment.active:
            demand[pr.boundary] = max(demand.get(pr.boundary, 0), pr.epochs)
    plan_nodes = [PlanNode(k, tree.nodes[k].parent, prof[k].compute_s, prof[k].bytes_per_record,
                           demand.get(k, 0), min(stored[k], n)) for k in tree.nodes]
    if materialize not in ("auto", "all", "none"):
        raise ConfigError(f"materialize must be auto, all or none, got {materialize!r}")
    if store is not None and materialize == "all":
        every = frozenset(k for k in tree.nodes if tree.nodes[k].parent)
        return ExtractionPlan(every, 0.0, 0.0, sum(n * prof[k].bytes_per_record for k in every))
    if store is not None and materialize == "auto":
        disk = _cached_disk(store)
        return solve(plan_nodes, PlanCosts(disk.read_bytes_per_s, disk.write_bytes_per_s, n,
                                           storage_budget, memory_cache))
    return solve(plan_nodes, PlanCosts(1e9, 1e9, n, 0, memory_cache))


def _materialize(run: _Run, graph: _PrefixGraph, plan: ExtractionPlan, prof: dict[str, NodeProfile],
                 memory_budget: int, extraction_batch_size: int | None, chunk_records: int) -> _Materialized:
    """Stage 3: one staged extraction pass per root and starting record for the nodes the plan
    stores and the store does not hold yet."""
    t0 = time.perf_counter()
    tree, stored, store, feature_dtype, n = graph.tree, graph.stored, run.store, run.feature_dtype, run.data.n
    stats = ExtractionStats()
    act = max((prof[k].activation_bytes for k in tree.nodes), default=4)
    xbs = extraction_batch_size or batch_size_for(act, memory_budget)
    available = {k: feature_dtype for k in tree.nodes if stored[k] >= n}
    if store is not None:
        for root in tree.roots:
            by_lo: dict[int, set[str]] = {}
            for k in plan.materialize:
                if tree.nodes[k].root == root and stored[k] < n:
                    by_lo.setdefault(stored[k], set()).add(k)
            for lo, targets in sorted(by_lo.items()):
                run.emit("extract", nodes=len(targets), records=n - lo)
                run.executor.extract(tree, targets, run.data, lo, n, store=store, dtype=feature_dtype,
                                     batch_size=xbs, chunk_records=chunk_records, stats=stats, available=available,
                                     device=run.device)
                xbs = stats.last_batch_size or xbs
        for k in plan.materialize:
            available[k] = feature_dtype
    return _Materialized(available, stats, xbs, time.perf_counter() - t0)


def _train(run: _Run, graph: _PrefixGraph, done: _Materialized, split: _Split, keep: KeepRule | None,
           memory_cache: int) -> _Trained:
    """Stage 4: heads grouped by the node they read, each group trained in one pass per epoch;
    with a keep rule, every candidate trains to ``keep.after`` steps, the best ``keep.k`` go on."""
    t0 = time.perf_counter()
    by_key: dict[Any, TrainingGroup] = {}
    for pr in graph.prepared:
        aug = pr.cand.config.augment
        gkey: Any = pr.boundary if not aug.active else ("aug", pr.boundary, aug, pr.cand.config.seed)
        group = by_key.setdefault(gkey, TrainingGroup(pr.boundary, {}, aug if aug.active else None,
                                                      pr.cand.config.seed))
        group.trainers[pr.cand.cid] = pr.trainer
    groups = list(by_key.values())
    labels = run.data.labels(graph.prepared[0].cand.config.loss)
    features = GroupFeatures(graph.tree, run.data, run.store, done.available, done.batch_size, run.device,
                             split.train_idx, split.val_idx, labels[split.train_idx], labels[split.val_idx],
                             run.itemsize, memory_cache)
    alive = {pr.cand.cid for pr in graph.prepared}
    pruned: frozenset[str] = frozenset()
    # ranked over all datasets (not per_dataset), the metric at the keep point is needed even
    # when this dataset's candidates all fit in k
    if keep is not None and (keep.k < len(graph.prepared) or not keep.per_dataset):
        run.executor.train(groups, features, alive, keep.after, run.emit)
        for g in groups:
            _, val = features.of(g)
            for trainer in g.trainers.values():
                trainer.record_validation(*val)
        name = metric_name(keep.metric)
        sign = 1 if lower_is_better(name) else -1
        ranked = sorted(graph.prepared, key=lambda pr: sign * pr.trainer.latest(name))
        pruned = frozenset(pr.cand.cid for pr in ranked[keep.k:])
        alive -= pruned
        run.emit("keep", kept=sorted(alive), pruned=sorted(pruned))
    run.executor.train(groups, features, alive, None, run.emit)
    return _Trained(groups, features, pruned, time.perf_counter() - t0)


def _report(run: _Run, graph: _PrefixGraph, plan: ExtractionPlan, done: _Materialized,
            trained: _Trained) -> SelectionResult:
    """Stage 5: each candidate's outcome and what reuse saved."""
    store, n = run.store, run.data.n
    outcomes = []
    for pr in graph.prepared:
        t = pr.trainer
        latest: dict[str, float] = {}
        for name, _, v in t.series:
            latest[name] = v
        # back where the caller's model lives (trainers may have moved it to the GPU and used
        # channels_last): an outcome compares and commits like the model it came from
        home = next(pr.cand.model.parameters(), torch.empty(0)).device
        pr.model.to(home, memory_format=torch.contiguous_format)
        outcomes.append(CandidateOutcome(
            pr.cand.cid, "pruned" if pr.cand.cid in trained.pruned else "finished", latest, tuple(t.series),
            t.step, t.epoch, pr.frozen, pr.boundary, pr.model, tuple(t.snapshots), t.step_seconds))
    remote = run.executor.stats()
    recomputed = trained.features.recomputed
    reuse = ReuseStats(
        prefix_nodes=graph.prefix_nodes,
        candidate_prefix_stages=sum(pr.frozen for pr in graph.prepared),
        materialized=tuple(sorted(plan.materialize)),
        records_extracted=sum(done.stats.stage_records.values()),
        records_recomputed=sum(recomputed.stage_records.values()),
        records_loaded=trained.features.records_loaded + remote.records_loaded,
        records_preexisting=sum(min(graph.stored[k], n) for k in plan.materialize),
        bytes_written=store.bytes_written if store else 0,
        bytes_read=(store.bytes_read if store else 0) + remote.bytes_read,
        fused_groups=tuple(len(g.trainers) for g in trained.groups),
        extraction_batch_size=done.batch_size, oom_backoffs=done.stats.oom_backoffs + recomputed.oom_backoffs,
        planned_s=plan.estimated_s, recompute_s=plan.recompute_s,
        backend=run.executor.name, workers=remote.workers,
        extract_s=done.seconds, train_s=trained.seconds, warnings=tuple(graph.warnings),
    )
    return SelectionResult(tuple(outcomes), reuse, plan)
