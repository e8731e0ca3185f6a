"""The Ray execution backend: extraction on a Ray Data actor pool, training as Ray tasks.

Nothing here changes what the planner decided; only where the work runs:

* **Extraction** of the nodes a plan stores, for records [lo, hi): the range
  is cut into exactly the chunks the local ChunkWriter would write
  (:func:`chunk_ranges`), one Ray Data row per chunk, and ``map_batches`` runs
  them on a pool of actors that each load the frozen prefix once (on a GPU when
  the cluster has them). An actor computes its chunk in the same extraction
  batches as the local pass and writes the chunk files itself (temp -> fsync ->
  rename, names fixed by the record range) to the feature store every worker
  reads. Workers never open the catalog: the driver checks that every chunk of
  every target came back exactly once, then registers them, once, in order.
  A killed actor is restarted by Ray and its chunk retried; a rewrite of the
  same chunk has the same name and the same bytes, so nothing is lost or doubled.
* **Training**: one Ray task per fused group. The task gets copies of the
  group's trainers (optimizer, shuffling generator and RNG state included),
  runs the very loop the local backend runs, and sends their state back; the
  driver copies it into its own trainers, so keep-top ranking, snapshots and
  commits work on the driver's objects as before.
* **Identical floats**: a worker uses this process's torch thread count
  (Ray would set 1; a float reduction split differently can change the last
  bit) and the same batch boundaries, so features and trained heads are
  bit-identical to the local backend on the same hardware.

Ray is imported only inside functions: ``import modelhub`` never needs it.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from .chain import Stage, run_stages
from .config import EvalConfig
from .data import DataView
from .errors import BackendError
from .executor import BackendOptions, ExecutorStats, FaultInjection
from .extract import ChunkWriter, ExtractionStats, chunk_ranges, extract, source_node
from .features import FeatureStore
from .fsstore import open_feature_store
from .groups import GroupFeatures, Progress, StoredFeatures, TrainingGroup, train_here
from .train import evaluate_stages
from .tree import PrefixTree, TreeNode


# ---- worker-side helpers (run inside Ray actors and tasks) ---------------------------------
def _worker_id() -> str:
    import ray
    ctx = ray.get_runtime_context()
    actor = ctx.get_actor_id()
    return f"{'actor' if actor else 'task-worker'}:{(actor or ctx.get_worker_id())[:12]}@{ctx.get_node_id()[:8]}"


def _worker_device(gpus: float) -> torch.device:
    import ray
    if gpus and ray.get_gpu_ids() and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _guarded(fn, *args: Any) -> dict:
    """Run a worker step; a modelhub error (bad stored chunk, ...) comes back as data so the
    driver raises it with its own class and message (Ray would wrap it in its traceback)."""
    from ..errors import ModelhubError
    try:
        return fn(*args)
    except ModelhubError as exc:
        return {"error": [type(exc).__module__, type(exc).__qualname__, str(exc)]}


def _reraise(record: dict) -> None:
    if "error" not in record:
        return
    import importlib
    from ..errors import ModelhubError
    module, name, message = record["error"]
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, ModelhubError)):
        cls = BackendError
    raise cls(message)


class _Rows:
    """``x[a:b]`` of one chunk's input records, fetched from the object store on first use."""

    def __init__(self, ref_holder: tuple, start: int, end: int) -> None:
        self._holder, self.start, self.end = ref_holder, start, end
        self._arr: np.ndarray | None = None
        self.bytes_read = 0

    def __getitem__(self, s: slice) -> np.ndarray:
        import ray
        if self._arr is None:
            self._arr = ray.get(self._holder[0])
            self.bytes_read += self._arr.nbytes
        a, b = s.start - self.start, s.stop - self.start
        assert 0 <= a <= b <= self.end - self.start, "a pass reads outside its chunk"
        return self._arr[a:b]


class _RangeWriter(ChunkWriter):
    """Writes one range's chunks; the FaultInjection test hook crashes it after some writes, once."""

    def __init__(self, *args: Any, fault: FaultInjection | None, range_start: int, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.fault, self.range_start = fault, range_start

    def _flush(self, key: str) -> None:
        super()._flush(key)
        f = self.fault
        if f is not None and f.chunk_start == self.range_start and len(self.written) >= f.after_writes:
            try:
                os.close(os.open(f.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return          # already fired once: this is the retry
            os._exit(1)         # a crash, not an exception: no cleanup, no reply to the driver


class ExtractWorker:
    """A Ray Data actor: loads the frozen prefix once, then extracts whole chunks."""

    def __init__(self, tree_holder: tuple, shard_holder: tuple, targets: list[str], uid: str,
                 location: str, dtype: str, batch_size: int, available: dict[str, str], threads: int,
                 gpus: float, fault: FaultInjection | None) -> None:
        import ray
        torch.set_num_threads(threads)
        self.device = _worker_device(gpus)
        self.tree: PrefixTree = ray.get(tree_holder[0])
        for node in self.tree.nodes.values():
            if node.stage is not None:
                node.stage.module.to(self.device).eval()
        self.shards: dict[int, Any] = ray.get(shard_holder[0])
        self.targets, self.uid, self.dtype = set(targets), uid, dtype
        self.store = open_feature_store(location)       # no catalog hook: the driver registers chunks
        self.batch_size, self.available, self.fault = batch_size, available, fault
        self.id = _worker_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        return {"result": [json.dumps(_guarded(self._one, a, b))
                           for a, b in zip(batch["start"].tolist(), batch["end"].tolist())]}

    def _one(self, a: int, b: int) -> dict:
        """Extract records [a, b) of every target into one chunk file each."""
        t0 = time.perf_counter()
        read0 = self.store.bytes_read
        rows = _Rows((self.shards.get(a),), a, b)
        view = DataView(self.uid, 0, rows, np.empty(0))   # type: ignore[arg-type] - x is sliced only
        stats = ExtractionStats()
        writer = _RangeWriter(self.store, self.uid, self.dtype, chunk_records=b - a,   # one chunk per node
                              fault=self.fault, range_start=a)
        extract(self.tree, self.targets, view, a, b, sink=writer, batch_size=self.batch_size,
                device=self.device, stats=stats, store=self.store, available=self.available)
        writer.close()
        written = writer.written
        return {
            "worker": self.id, "start": a, "end": b, "seconds": time.perf_counter() - t0,
            "bytes_read": rows.bytes_read + self.store.bytes_read - read0,
            "input_bytes_read": rows.bytes_read, "store_bytes_read": self.store.bytes_read - read0,
            "bytes_written": sum(c.nbytes for c in written),
            "stage_records": stats.stage_records, "stage_batches": stats.stage_batches,
            "last_batch_size": stats.last_batch_size, "oom_backoffs": stats.oom_backoffs,
            "chunks": [{"key": c.prefix, "start": c.start, "end": c.end, "shape": list(c.shape),
                        "nbytes": c.nbytes, "checksum": c.checksum} for c in written],
        }


class InferWorker:
    """A Ray Data actor for `dlv eval`: the whole network once per actor, outputs per batch."""

    def __init__(self, model_holder: tuple, shard_holder: tuple, batch_size: int, threads: int, gpus: float) -> None:
        import ray
        torch.set_num_threads(threads)
        self.device = _worker_device(gpus)
        self.stages: list[Stage] = ray.get(model_holder[0])
        for s in self.stages:
            s.module.to(self.device).eval()
        self.shards: dict[int, Any] = ray.get(shard_holder[0])
        self.batch_size, self.id = batch_size, _worker_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        results, data = [], []
        for a, b in zip(batch["start"].tolist(), batch["end"].tolist()):
            info = _guarded(self._one, a, b)
            data.append(info.pop("data", b""))
            results.append(json.dumps(info))
        return {"result": results, "data": data}

    def _one(self, a: int, b: int) -> dict:
        import ray
        t0 = time.perf_counter()
        x = ray.get(self.shards[a])
        parts = []
        with torch.no_grad():      # the batches evaluate_stages uses: same floats
            for i in range(0, b - a, self.batch_size):
                xb = torch.from_numpy(np.array(x[i:i + self.batch_size])).to(self.device)
                parts.append(run_stages(self.stages, xb).cpu())
        y = torch.cat(parts).numpy()
        return {"worker": self.id, "start": a, "end": b, "bytes_read": int(x.nbytes),
                "seconds": time.perf_counter() - t0, "shape": list(y.shape), "dtype": str(y.dtype),
                "data": y.tobytes()}


# ---- training tasks --------------------------------------------------------------------------
def _canon(trainer) -> list[torch.Tensor]:
    """The trainer's tensors in a fixed order (the order its epoch snapshots use)."""
    return [t for s in trainer.suffix for t in (*s.module.parameters(), *s.module.buffers())]


def export_trainer(trainer) -> dict:
    canon = _canon(trainer)
    index: dict[int, int] = {}
    for i, t in enumerate(canon):
        index.setdefault(id(t), i)
    return {
        "tensors": [t.detach().to("cpu", copy=True) for t in canon],
        "optimizer": trainer.optimizer.state_dict() if trainer.optimizer is not None else None,
        "shuffle": trainer.shuffle.get_state(), "rng": trainer._rng, "cuda_rng": trainer._cuda_rng,
        "step": trainer.step, "epoch": trainer.epoch, "series": list(trainer.series),
        # snapshots are keyed by id(tensor), which means nothing in another process: by position
        "snapshots": [(step, {index[k]: v for k, v in tensors.items() if k in index})
                      for step, tensors in trainer.snapshots],
        "pos": trainer._pos, "perm": trainer._perm, "loss_sum": trainer._loss_sum, "loss_n": trainer._loss_n,
    }


def adopt_trainer(trainer, state: dict) -> None:
    """Make the driver's trainer continue exactly where the remote copy stopped."""
    canon = _canon(trainer)
    with torch.no_grad():
        for dst, src in zip(canon, state["tensors"]):
            dst.copy_(src)
    if trainer.optimizer is not None:
        trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.shuffle.set_state(state["shuffle"])
    trainer._rng = state["rng"]
    if state.get("cuda_rng") is not None and trainer._rng_devices:
        trainer._cuda_rng = state["cuda_rng"]
    trainer.step, trainer.epoch, trainer.series = state["step"], state["epoch"], list(state["series"])
    trainer._pos, trainer._perm = state["pos"], state["perm"]
    trainer._loss_sum, trainer._loss_n = state["loss_sum"], state["loss_n"]
    trainer.snapshots.extend((step, {id(canon[i]): v for i, v in tensors.items()})
                             for step, tensors in state["snapshots"])


@dataclass(frozen=True)
class GroupJob:
    name: str
    trainers: list                                      # the driver's CandidateTrainers to advance
    source: Any                                         # StoredFeatures, or (train_f, (val_f, val_y))


def _train_group(*args: Any) -> tuple[list[dict], dict]:
    out = _guarded(lambda: dict(zip(("states", "info"), _train_group_body(*args))))
    return out.get("states", []), out.get("info", out)


def _train_group_body(trainers: list, source: Any, location: str | None, uid: str, split: tuple,
                      y_train: torch.Tensor, stop_at: int | None, threads: int) -> tuple[list[dict], dict]:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    if isinstance(source, StoredFeatures):
        store = open_feature_store(location)  # type: ignore[arg-type]
        t_idx, v_idx, y_val = split
        feats = torch.from_numpy(store.read(source.key, uid, source.dtype, 0, source.n)).float()
        train_f, val = feats[t_idx], (feats[v_idx], y_val)   # as the local group_features does
        bytes_read = store.bytes_read
    else:
        train_f, val = source
        bytes_read = train_f.numel() * train_f.element_size() + val[0].numel() * val[0].element_size()
    rounds = 0
    while True:                # the local backend's loop for one group (groups.train_here)
        active = [t for t in trainers if not t.done and (stop_at is None or t.step < stop_at)]
        if not active:
            break
        for t in active:
            t.train_round(train_f, y_train, stop_at, val)
        rounds += 1
    return [export_trainer(t) for t in trainers], {
        "worker": _worker_id(), "role": "train", "bytes_read": int(bytes_read), "rounds": rounds,
        "heads": len(trainers), "seconds": time.perf_counter() - t0,
        "records": int(train_f.shape[0] + val[0].shape[0]),
        "records_loaded": source.n if isinstance(source, StoredFeatures) else 0}


# ---- the driver ------------------------------------------------------------------------------
@dataclass
class _WorkerTotals:
    role: str
    chunks: int = 0
    records: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    seconds: float = 0.0


@dataclass
class RayExecutor:
    opts: BackendOptions
    cpus: float
    gpus: float
    workers: dict[str, _WorkerTotals] = field(default_factory=dict)
    records_loaded: int = 0
    worker_bytes_read: int = 0        # feature-store bytes read by workers

    # -- connection ---------------------------------------------------------------------
    @classmethod
    def connect(cls, opts: BackendOptions) -> "RayExecutor":
        import ray
        from ray.data import DataContext
        if not ray.is_initialized():
            address = opts.address or os.environ.get("RAY_ADDRESS") or None
            kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
            if address is None:
                kwargs["include_dashboard"] = False      # a throwaway local cluster needs no dashboard
            try:
                ray.init(address=address, **kwargs)
            except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError ...
                where = address or "a new local cluster"
                raise BackendError(f"cannot connect to Ray at {where} ({type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''}); check --ray-address / "
                                   f"RAY_ADDRESS, or leave both unset to start a local cluster") from None
            # our own connection: keep Ray's progress bars and logs off the terminal the CLI owns
            # (a session the caller opened keeps its own settings)
            ctx = DataContext.get_current()
            ctx.enable_progress_bars = False
            ctx.print_on_execution_start = False
            for name in ("ray", "ray.data"):
                logging.getLogger(name).setLevel(logging.ERROR)
        res = ray.cluster_resources()
        return cls(opts, float(res.get("CPU", 1.0)), float(res.get("GPU", 0.0)))

    @property
    def name(self) -> str:
        return "ray"

    def stats(self) -> ExecutorStats:
        return ExecutorStats(self.records_loaded, self.worker_bytes_read, self.worker_stats())

    @property
    def threads(self) -> int:
        return self.opts.threads or torch.get_num_threads()

    @property
    def gpus_per_worker(self) -> float:
        if self.opts.gpus_per_worker is not None:
            return self.opts.gpus_per_worker
        return 1.0 if self.gpus > 0 else 0.0

    def pool_size(self, jobs: int) -> int:
        if self.opts.workers:
            n = self.opts.workers
        elif self.gpus_per_worker:
            n = int(self.gpus // self.gpus_per_worker)
        else:
            n = int(self.cpus // max(self.opts.cpus_per_worker, 1e-3))
        return max(1, min(n, jobs))

    def worker_stats(self) -> tuple[dict, ...]:
        return tuple({"worker": w, **t.__dict__} for w, t in sorted(self.workers.items()))

    def _account(self, info: dict, role: str) -> _WorkerTotals:
        t = self.workers.setdefault(info["worker"], _WorkerTotals(role))
        t.bytes_read += int(info.get("bytes_read", 0))
        t.bytes_written += int(info.get("bytes_written", 0))
        t.seconds += float(info.get("seconds", 0.0))
        return t

    def _run(self, what: str, fn):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - a worker failed: surface modelhub's own error if it was one
            own = _modelhub_cause(exc)
            if own is not None:
                raise own from None
            first = (str(exc).strip().splitlines() or [""])[-1][:300]
            raise BackendError(f"{what} failed on the Ray cluster ({type(exc).__name__}: {first}); "
                               "see the Ray worker logs, or rerun with --backend local") from None

    # -- extraction ----------------------------------------------------------------------
    def extract(self, tree: PrefixTree, targets: set[str], data: DataView, lo: int, hi: int, *,
                store: FeatureStore, dtype: str, batch_size: int, chunk_records: int,
                stats: ExtractionStats, available: dict[str, str], device: torch.device | None = None) -> None:
        """The chunks the local pass would write, by a pool of actors (each picks its own device)."""
        import ray
        ranges = chunk_ranges(lo, hi, batch_size, chunk_records)
        if not ranges or not targets:
            return
        source = source_node(tree, targets, available)
        shards: dict[int, Any] = {}
        if tree.is_root(source):     # workers fetch only the input records of their own chunks
            shards = {a: ray.put(np.ascontiguousarray(data.x[a:b])) for a, b in ranges}
        kwargs = dict(tree_holder=(ray.put(_subtree(tree, targets)),), shard_holder=(ray.put(shards),),
                      targets=sorted(targets), uid=data.uid, location=store.location(), dtype=dtype,
                      batch_size=batch_size, available=dict(available), threads=self.threads,
                      gpus=self.gpus_per_worker, fault=self.opts.fault)

        def run() -> list[dict]:
            ds = ray.data.from_items([{"start": a, "end": b} for a, b in ranges], override_num_blocks=len(ranges))
            out = ds.map_batches(ExtractWorker, batch_size=1, concurrency=self.pool_size(len(ranges)),
                                 fn_constructor_kwargs=kwargs, num_cpus=self.opts.cpus_per_worker,
                                 num_gpus=self.gpus_per_worker or None)
            return [json.loads(r["result"]) for r in out.take_all()]
        results = self._run("frozen-prefix extraction", run)
        for r in results:
            _reraise(r)
        self._register(results, ranges, targets, data.uid, dtype, store, stats)

    def _register(self, results: list[dict], ranges: list[tuple[int, int]], targets: set[str], uid: str,
                  dtype: str, store: FeatureStore, stats: ExtractionStats) -> None:
        """Check that every chunk of every target arrived exactly once, then (and only then)
        register each one with the driver's store (which mirrors it into the catalog)."""
        by_range: dict[tuple[int, int], dict] = {}
        for r in results:                       # a retried range reports once; keep the first report
            by_range.setdefault((r["start"], r["end"]), r)
        chunks: dict[tuple[str, int, int], dict] = {}
        for r in by_range.values():
            for c in r["chunks"]:
                k = (c["key"], c["start"], c["end"])
                if k in chunks and chunks[k]["checksum"] != c["checksum"]:
                    raise BackendError(f"two workers wrote different bytes for records [{c['start']}, "
                                       f"{c['end']}) of prefix {c['key'][:12]}; extraction is not "
                                       "deterministic on this cluster (mixed hardware?); use --backend local")
                chunks.setdefault(k, c)
        expected = {(t, a, b) for t in targets for a, b in ranges}
        if set(chunks) != expected:
            missing = sorted(expected - set(chunks))[:3]
            raise BackendError(f"the Ray workers returned {len(chunks)} of {len(expected)} feature chunks "
                               f"(missing e.g. {[(k[:12], a, b) for k, a, b in missing]}); run the evaluation again")
        for key, a, b in sorted(chunks, key=lambda k: (k[1], k[0])):
            c = chunks[(key, a, b)]
            on_disk = {(i.start, i.end): i for i in store.chunks(key, uid, dtype)}
            info = on_disk.get((a, b))
            if info is None or info.checksum != c["checksum"]:
                raise BackendError(f"feature chunk [{a}, {b}) of prefix {key[:12]} is not in {store.location()} "
                                   "as the worker reported; every worker must write to the same feature location")
            store.bytes_written += info.nbytes
            if store.on_write is not None:
                store.on_write(info)      # the catalog row: written by the driver only, once per chunk
        for r in by_range.values():
            t = self._account(r, "extract")
            t.chunks += 1
            t.records += r["end"] - r["start"]
            for k, v in r["stage_records"].items():
                stats.stage_records[k] = stats.stage_records.get(k, 0) + v
            for k, v in r["stage_batches"].items():
                stats.stage_batches[k] = stats.stage_batches.get(k, 0) + v
            stats.oom_backoffs += r["oom_backoffs"]
            self.worker_bytes_read += r["store_bytes_read"]
            stats.last_batch_size = min(stats.last_batch_size or r["last_batch_size"], r["last_batch_size"])

    # -- training ------------------------------------------------------------------------
    def train(self, groups: Sequence[TrainingGroup], features: GroupFeatures, alive: set[str],
              stop_at: int | None, progress: Progress) -> None:
        """One Ray task per fused group; augmented groups (fresh inputs every epoch) train here."""
        jobs: list[tuple[TrainingGroup, GroupJob]] = []
        for g in groups:
            trainers = g.active(alive, stop_at)
            if not trainers or g.augmentation is not None:
                continue
            stored = features.stored(g)     # read by the task; else the input or prefix outputs computed here
            jobs.append((g, GroupJob(g.boundary, trainers, stored if stored is not None else features.of(g))))
        self._train_jobs([j for _, j in jobs], store=features.store, uid=features.data.uid,
                         split=(features.train_idx, features.val_idx, features.y_val), y_train=features.y_train,
                         stop_at=stop_at, device=features.device)
        for g, job in jobs:
            progress("epoch", group=g.boundary, heads=len(job.trainers))
        remote = {id(g) for g, _ in jobs}
        for g in groups:
            if id(g) not in remote:
                train_here(g, features, alive, stop_at, progress)

    def _train_jobs(self, jobs: list[GroupJob], *, store: FeatureStore | None, uid: str,
              split: tuple[torch.Tensor, torch.Tensor, torch.Tensor], y_train: torch.Tensor,
              stop_at: int | None, device: torch.device) -> None:
        import ray
        if not jobs:
            return
        task = ray.remote(_train_group).options(
            num_cpus=self.opts.cpus_per_worker, num_gpus=1 if device.type == "cuda" else 0,
            max_retries=3, retry_exceptions=False)    # a lost worker reruns the group from the same state
        split_ref, y_ref = ray.put(split), ray.put(y_train)
        location = store.location() if store is not None else None

        def run() -> list:
            refs = []
            for job in jobs:
                shipped = []
                for t in job.trainers:   # snapshots stay here; the copy brings back only new ones
                    c = copy.copy(t)
                    c.snapshots = []
                    shipped.append(c)
                refs.append(task.remote(shipped, job.source, location, uid, split_ref, y_ref, stop_at, self.threads))
            return ray.get(refs)
        outputs = self._run("candidate training", run)
        for _, info in outputs:
            _reraise(info)
        for job, (states, info) in zip(jobs, outputs):
            for trainer, state in zip(job.trainers, states):
                adopt_trainer(trainer, state)
            t = self._account(info, "train")
            t.chunks += 1                  # here: fused groups trained
            t.records += info["records"]   # feature rows the task received or read
            self.records_loaded += info["records_loaded"]
            if isinstance(job.source, StoredFeatures):
                self.worker_bytes_read += info["bytes_read"]

    # -- whole-network inference (dlv eval) ----------------------------------------------
    def evaluate(self, stages: list[Stage], x: torch.Tensor, y: torch.Tensor, cfg: EvalConfig,
                 device: torch.device) -> dict[str, float]:
        """Outputs from the cluster; loss and accuracy in the same batches here."""
        out = self.infer(stages, x).to(device)
        return evaluate_stages([], out, y, cfg, device)

    def infer(self, stages: list[Stage], x: torch.Tensor, batch_size: int = 1024,
              batches_per_chunk: int = 8) -> torch.Tensor:
        import ray
        n = int(x.shape[0])
        ranges = chunk_ranges(0, n, batch_size, batch_size * batches_per_chunk)
        arr = x.detach().cpu().numpy()
        shards = {a: ray.put(np.ascontiguousarray(arr[a:b])) for a, b in ranges}
        model = [Stage(s.name, copy.deepcopy(s.module).cpu(), s.param_prefix) for s in stages]
        kwargs = dict(model_holder=(ray.put(model),), shard_holder=(ray.put(shards),), batch_size=batch_size,
                      threads=self.threads, gpus=self.gpus_per_worker)

        def run() -> list[dict]:
            ds = ray.data.from_items([{"start": a, "end": b} for a, b in ranges], override_num_blocks=len(ranges))
            out = ds.map_batches(InferWorker, batch_size=1, concurrency=self.pool_size(len(ranges)),
                                 fn_constructor_kwargs=kwargs, num_cpus=self.opts.cpus_per_worker,
                                 num_gpus=self.gpus_per_worker or None)
            return out.take_all()
        rows = self._run("evaluation", run)
        parts: dict[int, np.ndarray] = {}
        for r in rows:
            info = json.loads(r["result"])
            _reraise(info)
            parts.setdefault(info["start"], np.frombuffer(r["data"], dtype=info["dtype"]).reshape(info["shape"]))
            t = self._account(info, "infer")
            t.chunks += 1
            t.records += info["end"] - info["start"]
        if sorted(parts) != [a for a, _ in ranges]:
            raise BackendError("the Ray workers did not return every record's output; run the evaluation again")
        return torch.from_numpy(np.concatenate([parts[a] for a, _ in ranges]))


def _modelhub_cause(exc: BaseException):
    """The modelhub error a worker raised, as raised there (not Ray's wrapper with the remote traceback)."""
    from ..errors import ModelhubError
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ModelhubError) and type(e).__module__.startswith("modelhub"):
            return e
        for nxt in (getattr(e, "cause", None), e.__cause__, e.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return None


def _subtree(tree: PrefixTree, targets: set[str]) -> PrefixTree:
    """The part of the tree a pass needs, with CPU copies of its modules (what workers load)."""
    needed: set[str] = set()
    for t in targets:
        needed.update(tree.path(t))
    sub = PrefixTree()
    for key in sorted(needed, key=lambda k: tree.nodes[k].depth):
        node = tree.nodes[key]
        stage = None
        if node.stage is not None:
            stage = Stage(node.stage.name, copy.deepcopy(node.stage.module).cpu(), node.stage.param_prefix)
        sub.nodes[key] = TreeNode(key, node.depth, node.parent, stage, node.root, node.preprocessing,
                                  [c for c in node.children if c in needed], node.label)
        if node.parent is None:
            sub.roots.append(key)
    return sub
