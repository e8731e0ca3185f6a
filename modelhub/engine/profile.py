"""Measurements the planner needs: per-stage compute time, output sizes, disk throughput."""
from __future__ import annotations

import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .data import DataView
from .tree import PrefixTree


@dataclass(frozen=True)
class NodeProfile:
    compute_s: float          # seconds per record from the parent's output
    bytes_per_record: int     # output size at the feature dtype
    activation_bytes: int     # per record: input + output, or twice the largest layer output inside
                              # the stage if larger (for the extraction batch size)


def profile_tree(tree: PrefixTree, data: DataView, device: torch.device, feature_itemsize: int,
                 sample: int = 32) -> dict[str, NodeProfile]:
    """Time every stage of the tree on a small sample (one warm-up, then the best of two runs).
    On out-of-memory the sample halves, as extraction batches do."""
    from .extract import is_out_of_memory
    n = min(sample, data.n)
    while True:
        try:
            return _profile(tree, data, device, feature_itemsize, n)
        except Exception as exc:  # only out-of-memory is retried
            if not is_out_of_memory(exc) or n == 1:
                raise
            n //= 2
            if device.type == "cuda":
                torch.cuda.empty_cache()


def _profile(tree: PrefixTree, data: DataView, device: torch.device, feature_itemsize: int,
             n: int) -> dict[str, NodeProfile]:
    out: dict[str, NodeProfile] = {}
    for root in tree.roots:
        x0 = tree.nodes[root].preprocessing.apply(data.x[:n]).to(device)
        per = x0[0].numel()
        out[root] = NodeProfile(0.0, per * feature_itemsize, per * 4)
        stack = [(root, x0)]
        while stack:
            key, x = stack.pop()
            for child in tree.nodes[key].children:
                module = tree.nodes[child].stage.module  # type: ignore[union-attr]
                module.eval()
                best = float("inf")
                with torch.no_grad():
                    with _largest_layer_output(module) as peak:
                        y = module(x)
                    for _ in range(2):
                        if device.type == "cuda":
                            torch.cuda.synchronize()
                        t0 = time.perf_counter()
                        y = module(x)
                        if device.type == "cuda":
                            torch.cuda.synchronize()
                        best = min(best, time.perf_counter() - t0)
                per_out = y[0].numel()
                act = max((x[0].numel() + per_out) * 4, 2 * peak[0] // n)
                out[child] = NodeProfile(best / n, per_out * feature_itemsize, act)
                stack.append((child, y))
    return out


@contextmanager
def _largest_layer_output(module: torch.nn.Module) -> Iterator[list[int]]:
    """Bytes of the largest tensor any layer inside ``module`` produces (a joined stage of a
    residual network holds activations far larger than its input and output)."""
    peak = [0]

    def hook(_m, _inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            peak[0] = max(peak[0], output.numel() * output.element_size())
    handles = [m.register_forward_hook(hook) for m in module.modules() if not list(m.children())]
    try:
        yield peak
    finally:
        for h in handles:
            h.remove()


@dataclass(frozen=True)
class DiskThroughput:
    read_bytes_per_s: float
    write_bytes_per_s: float


def measure_disk(folder: Path, nbytes: int = 8 << 20) -> DiskThroughput:
    """Write and read back a scratch .npy next to the feature store (page cache included, as in use)."""
    folder.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(0).standard_normal(nbytes // 4).astype(np.float32)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".probe-") as tmp:
        path = Path(tmp) / "probe.npy"
        t0 = time.perf_counter()
        with open(path, "wb") as fh:
            np.save(fh, arr)
            fh.flush()
        write = time.perf_counter() - t0
        t0 = time.perf_counter()
        back = torch.from_numpy(np.array(np.load(path, mmap_mode="r")))
        read = time.perf_counter() - t0
        del back
    return DiskThroughput(nbytes / max(read, 1e-6), nbytes / max(write, 1e-6))
