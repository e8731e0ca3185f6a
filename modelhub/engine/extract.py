"""Staged extraction: one pass over records computes every needed prefix output.

The pass starts at the deepest node already available for the records (stored
features, else the preprocessed input), walks the needed part of the prefix
tree once per batch and hands each wanted output to a sink. Frozen stages run
in eval mode under no_grad. The extraction batch size comes from a memory
budget, independent of any training batch size, and halves on out-of-memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .data import DataView
from .errors import ExtractionMemoryError
from .features import ChunkInfo, FeatureStore
from .tree import PrefixTree

Sink = Callable[[str, int, torch.Tensor], None]   # (node key, first record, outputs)


@dataclass
class ExtractionStats:
    stage_batches: dict[str, int] = field(default_factory=dict)    # forward calls per node
    stage_records: dict[str, int] = field(default_factory=dict)    # records pushed through per node
    oom_backoffs: int = 0
    last_batch_size: int = 0


def is_out_of_memory(exc: BaseException) -> bool:
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def batch_size_for(per_record_bytes: int, memory_budget: int, cap: int = 4096) -> int:
    """Largest batch whose activations fit ``memory_budget`` (x3 for workspace)."""
    return int(max(1, min(cap, memory_budget // max(1, 3 * per_record_bytes))))


def run_batched(lo: int, hi: int, batch_size: int, step: Callable[[int, int], None],
                stats: ExtractionStats) -> int:
    """Call ``step`` over [lo, hi) in batches, halving the batch on out-of-memory."""
    start, bs = lo, max(1, batch_size)
    while start < hi:
        end = min(start + bs, hi)
        try:
            step(start, end)
        except Exception as exc:  # only out-of-memory is retried
            if not is_out_of_memory(exc):
                raise
            if bs == 1:
                raise ExtractionMemoryError(
                    "extraction ran out of memory with a batch of one record; lower the input "
                    "resolution, use a smaller network, or free device memory"
                ) from None
            bs //= 2
            stats.oom_backoffs += 1
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        start = end
    stats.last_batch_size = bs
    return bs


def chunk_ranges(lo: int, hi: int, batch_size: int, chunk_records: int) -> list[tuple[int, int]]:
    """The record ranges of the chunks :class:`ChunkWriter` writes for one pass over [lo, hi).

    The writer flushes once a whole number of extraction batches reaches
    ``chunk_records``, so a chunk spans ceil(chunk_records / batch) batches.
    A distributed pass hands out exactly these ranges: the same chunk files,
    and inside each the same batches (float results can depend on the batch).
    """
    bs = max(1, batch_size)
    step = -(-max(1, chunk_records) // bs) * bs
    return [(a, min(a + step, hi)) for a in range(lo, hi, step)]


def source_node(tree: PrefixTree, targets: set[str], available: dict[str, str], *,
                augmenting: bool = False) -> str:
    """Where a pass for ``targets`` starts: the deepest stored node on their shared path
    (the input root when augmenting, since stored features are un-augmented)."""
    needed: set[str] = set()
    for t in targets:
        needed.update(tree.path(t))
    roots = {tree.nodes[t].root for t in targets}
    assert len(roots) == 1, "extract one input root at a time"
    source = roots.pop()
    while not augmenting and source not in targets:
        kids = [c for c in tree.nodes[source].children if c in needed]
        if len(kids) == 1 and kids[0] in available and kids[0] not in targets:
            source = kids[0]
        else:
            break
    return source


def extract(tree: PrefixTree, targets: set[str], data: DataView, lo: int, hi: int, *,
            sink: Sink, batch_size: int, device: torch.device, stats: ExtractionStats,
            store: FeatureStore | None = None, available: dict[str, str] | None = None,
            transform: Callable[[torch.Tensor, int], torch.Tensor] | None = None) -> None:
    """Compute the outputs of ``targets`` (one root) for records [lo, hi).

    ``available`` maps node keys whose stored features cover [lo, hi) to their
    dtype; the pass starts from the deepest such node on the shared path.
    ``transform(x, first_record)`` alters the preprocessed input (augmentation);
    with it the pass always starts at the input.
    """
    if not targets or hi <= lo:
        return
    needed: set[str] = set()
    for t in targets:
        needed.update(tree.path(t))
    available = available or {}
    source = source_node(tree, targets, available, augmenting=transform is not None)
    node = tree.nodes[source]
    for key in needed:
        if tree.nodes[key].stage is not None:
            tree.nodes[key].stage.module.eval()

    def load(a: int, b: int) -> torch.Tensor:
        if node.stage is None:
            x = node.preprocessing.apply(data.x[a:b])
            if transform is not None:
                x = transform(x, a)
        else:
            assert store is not None
            x = torch.from_numpy(store.read(source, data.uid, available[source], a, b)).float()
        return x.to(device)

    def walk(key: str, x: torch.Tensor, out: dict[str, torch.Tensor]) -> None:
        for child in tree.nodes[key].children:
            if child not in needed:
                continue
            y = tree.nodes[child].stage.module(x)  # type: ignore[union-attr]
            stats.stage_batches[child] = stats.stage_batches.get(child, 0) + 1
            stats.stage_records[child] = stats.stage_records.get(child, 0) + x.shape[0]
            if child in targets:
                out[child] = y
            walk(child, y, out)

    def step(a: int, b: int) -> None:
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            x = load(a, b)
            if source in targets:
                out[source] = x
            walk(source, x, out)
        # sinks see a batch only once all of it succeeded (an OOM retry never duplicates)
        for key, y in out.items():
            sink(key, a, y)

    run_batched(lo, hi, batch_size, step, stats)


class ChunkWriter:
    """Buffers extracted batches per node and writes chunks of ``chunk_records``."""

    def __init__(self, store: FeatureStore, dataset_uid: str, dtype: str, chunk_records: int = 8192) -> None:
        self.store, self.uid, self.dtype, self.chunk_records = store, dataset_uid, dtype, chunk_records
        self._buf: dict[str, list[np.ndarray]] = {}
        self._start: dict[str, int] = {}
        self._count: dict[str, int] = {}
        self.written: list[ChunkInfo] = []      # what this writer stored, in order

    def __call__(self, key: str, first: int, y: torch.Tensor) -> None:
        arr = y.detach().to("cpu").numpy().astype(self.dtype, copy=False)
        if key not in self._buf:
            self._buf[key], self._start[key], self._count[key] = [], first, 0
        self._buf[key].append(arr)
        self._count[key] += arr.shape[0]
        if self._count[key] >= self.chunk_records:
            self._flush(key)

    def _flush(self, key: str) -> None:
        if not self._buf.get(key):
            return
        block = np.concatenate(self._buf[key])
        self.written.append(self.store.write_chunk(key, self.uid, self.dtype, self._start[key], block))
        self._start[key] += block.shape[0]
        self._buf[key], self._count[key] = [], 0

    def close(self) -> None:
        for key in list(self._buf):
            self._flush(key)


class Collector:
    """Keeps extracted batches in memory (recomputed features, never stored)."""

    def __init__(self) -> None:
        self.parts: dict[str, list[torch.Tensor]] = {}

    def __call__(self, key: str, first: int, y: torch.Tensor) -> None:
        self.parts.setdefault(key, []).append(y)

    def result(self, key: str) -> torch.Tensor:
        parts = self.parts.get(key, [])
        return torch.cat(parts) if len(parts) > 1 else parts[0]
