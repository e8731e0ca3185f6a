"""Measurements the planner needs: per-stage compute time, output sizes, disk throughput."""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data import DataView
from .tree import PrefixTree


@dataclass(frozen=True)
class NodeProfile:
    compute_s: float          # seconds per record from the parent's output
    bytes_per_record: int     # output size at the feature dtype
    activation_bytes: int     # float32 input + output bytes per record (for extraction batch size)


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
                out[child] = NodeProfile(best / n, per_out * feature_itemsize, (x[0].numel() + per_out) * 4)
                stack.append((child, y))
    return out


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
