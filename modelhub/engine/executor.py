"""Where the engine's work runs: the executor interface and the local executor.

An :class:`Executor` runs the three kinds of work the engine hands out:
frozen-prefix extraction into the feature store, the epochs of fused
training groups, and whole-network evaluation (`dlv eval`). The planner,
the features and the results are the same on every executor; only where the
work runs differs. :class:`LocalExecutor` runs everything in this process;
``ray_backend.RayExecutor`` runs it on a Ray cluster. ``backend.open_executor``
picks one from :class:`BackendOptions`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch

from .chain import Stage
from .config import EvalConfig
from .data import DataView
from .extract import ChunkWriter, ExtractionStats, extract
from .features import FeatureStore
from .groups import GroupFeatures, Progress, TrainingGroup, train_here
from .train import evaluate_stages
from .tree import PrefixTree


@dataclass(frozen=True)
class BackendOptions:
    name: str = "local"                   # local | ray
    address: str | None = None            # ray://host:10001, host:6379, "auto"; None: RAY_ADDRESS or a local cluster
    workers: int | None = None            # extraction actors; None: cluster CPUs (GPUs when present) / cpus_per_worker
    cpus_per_worker: float = 1.0          # declared per actor and per training task
    gpus_per_worker: float | None = None  # None: 1 when the cluster has GPUs, else 0
    threads: int | None = None            # torch threads in workers; None: this process's (bit-identical floats)
    fault: "FaultInjection | None" = None  # tests only: kill an extraction actor once

    @property
    def is_local(self) -> bool:
        return self.name == "local"


@dataclass(frozen=True)
class FaultInjection:
    """Make the extraction actor that handles the chunk starting at ``chunk_start`` exit
    (``os._exit``) after ``after_writes`` chunk files of it are written, the first time
    only: ``marker`` is created when it fires, so the retry runs normally."""
    chunk_start: int
    marker: str
    after_writes: int = 1


@dataclass(frozen=True)
class ExecutorStats:
    """What work done outside this process adds to a run's reuse statistics."""
    records_loaded: int = 0               # feature rows workers read from the store for training
    bytes_read: int = 0                   # feature-store bytes workers read
    workers: tuple[dict, ...] = ()        # per worker: role, chunks, records, bytes read/written, seconds


class Executor(Protocol):
    """Runs extraction, training and evaluation; the results do not depend on which one."""

    @property
    def name(self) -> str:
        """The backend's name (local | ray), reported in ReuseStats.backend."""
        ...

    def extract(self, tree: PrefixTree, targets: set[str], data: DataView, lo: int, hi: int, *,
                store: FeatureStore, dtype: str, batch_size: int, chunk_records: int, stats: ExtractionStats,
                available: dict[str, str], device: torch.device | None = None) -> None:
        """Write the outputs of nodes ``targets`` for records [lo, hi) into ``store`` as the chunks
        a local pass writes (``store.on_write`` sees each chunk once), starting from the deepest
        node in ``available`` (node -> stored dtype); add the work to ``stats``."""
        ...

    def train(self, groups: Sequence[TrainingGroup], features: GroupFeatures, alive: set[str],
              stop_at: int | None, progress: Progress) -> None:
        """Advance the live heads (candidate ids in ``alive``) of every group until each is done
        or reaches ``stop_at`` steps; this process's trainers hold the result."""
        ...

    def evaluate(self, stages: list[Stage], x: torch.Tensor, y: torch.Tensor, cfg: EvalConfig,
                 device: torch.device) -> dict[str, float]:
        """Loss and accuracy of the whole network ``stages`` on ``x``, ``y`` (`dlv eval`)."""
        ...

    def stats(self) -> ExecutorStats:
        """The work done outside this process so far."""
        ...


class LocalExecutor:
    """Everything in this process (the default backend; never needs Ray)."""

    name = "local"

    def extract(self, tree: PrefixTree, targets: set[str], data: DataView, lo: int, hi: int, *,
                store: FeatureStore, dtype: str, batch_size: int, chunk_records: int, stats: ExtractionStats,
                available: dict[str, str], device: torch.device | None = None) -> None:
        writer = ChunkWriter(store, data.uid, dtype, chunk_records)
        extract(tree, targets, data, lo, hi, sink=writer, batch_size=batch_size,
                device=device or torch.device("cpu"), stats=stats, store=store, available=available)
        writer.close()

    def train(self, groups: Sequence[TrainingGroup], features: GroupFeatures, alive: set[str],
              stop_at: int | None, progress: Progress) -> None:
        for group in groups:
            train_here(group, features, alive, stop_at, progress)

    def evaluate(self, stages: list[Stage], x: torch.Tensor, y: torch.Tensor, cfg: EvalConfig,
                 device: torch.device) -> dict[str, float]:
        return evaluate_stages(stages, x, y, cfg, device)

    def stats(self) -> ExecutorStats:
        return ExecutorStats()
