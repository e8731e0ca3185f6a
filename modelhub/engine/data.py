"""An in-memory view of one dataset version, its stable split and preprocessing.

Records of a dataset are append-only: record i of a dataset never changes, so
stored prefix outputs of records [0, n) stay valid for every later version.
The train/validation split hashes (dataset uid, record index), so adding
records never moves an old record to the other side.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .config import Augmentation, EvalConfig
from .errors import ConfigError
from .packing import Layout

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def stable_split(uid: str, n: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) of records [0, n); stable as n grows."""
    salt = np.uint64(int.from_bytes(uid.encode()[:8].ljust(8, b"\0"), "little"))
    u = _splitmix64(np.arange(n, dtype=np.uint64) ^ salt).astype(np.float64) / float(2**64)
    val = u < val_fraction
    return np.flatnonzero(~val), np.flatnonzero(val)


@dataclass(frozen=True)
class Preprocessing:
    """Deterministic preprocessing; part of every prefix's content hash."""
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @staticmethod
    def from_config(cfg: EvalConfig) -> "Preprocessing":
        return Preprocessing(cfg.normalize_mean, cfg.normalize_std)

    def describe(self) -> dict[str, Any]:
        return {"normalize": None if self.mean is None else {"mean": list(self.mean), "std": list(self.std or ())}}

    def apply(self, x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if self.mean is None:
            return t
        mean = torch.tensor(self.mean, dtype=torch.float32)
        std = torch.tensor(self.std, dtype=torch.float32)
        if t.dim() >= 2 and len(self.mean) == t.shape[1] and len(self.mean) > 1:
            shape = (1, -1) + (1,) * (t.dim() - 2)
            mean, std = mean.view(shape), std.view(shape)
        return (t - mean) / std


def augment(x: torch.Tensor, aug: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """Stochastic preprocessing, seeded per (candidate seed, epoch) for reproducibility."""
    if aug.hflip and x.dim() >= 3:
        flip = torch.rand(x.shape[0], generator=generator) < 0.5
        x = torch.where(flip.view((-1,) + (1,) * (x.dim() - 1)), x.flip(-1), x)
    if aug.noise_std > 0:
        x = x + aug.noise_std * torch.randn(x.shape, generator=generator)
    return x


@dataclass(frozen=True, eq=False)
class DataView:
    uid: str                    # identity of the append-only record sequence
    version: int                # dataset version (number of `data add` cycles)
    x: np.ndarray               # (n, ...) inputs
    y: np.ndarray               # (n,) labels (int class ids or float targets)
    name: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def layout(self) -> Layout | None:
        """Records with several inputs (``x0``, ``x1``, ...) are stored packed, one float32 row
        per record (packing.py); None for one float32 input ``x``."""
        described = self.meta.get("layout")
        return Layout.parse(described) if described else None

    def check_preprocessing(self, pre: Preprocessing, aug: Augmentation) -> None:
        if self.layout is not None and (pre.mean is not None or aug.active):
            raise ConfigError(
                f"dataset {self.name or self.uid} has {len(self.layout.slots)} input(s) stored as they are; "
                "normalize and augment apply to one float input x only: drop them from the config"
            )

    def example(self, pre: Preprocessing, n: int = 3) -> tuple[torch.Tensor, ...]:
        """The network's inputs for the first ``n`` records (to cut the network, chain.py)."""
        x = pre.apply(self.x[:n])
        layout = self.layout
        return layout.unpack(x) if layout is not None else (x,)

    def split(self, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        return stable_split(self.uid, self.n, val_fraction)

    def labels(self, loss: str) -> torch.Tensor:
        if loss == "cross_entropy":
            return torch.from_numpy(np.asarray(self.y).astype(np.int64))
        return torch.from_numpy(np.asarray(self.y, dtype=np.float32))
