"""What a progressive query did: bytes read, records certified per level, time, fallbacks."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class LevelStat:
    step: int                    # 0 = first read; each later step raised some groups' precision
    mean_segments: float         # average read level over the parameter tensors
    refined: tuple[str, ...]     # groups whose precision was raised to reach this step
    bytes_read: int              # cumulative distinct stored bytes fetched
    bytes_fraction: float
    records: int                 # records still undecided when this step ran
    certified: int               # records certified at this step
    certified_fraction: float    # cumulative fraction of all records certified so far


@dataclass(frozen=True)
class ProgressiveReport:
    n_records: int
    top_k: int
    labels: np.ndarray           # [N, k] int64; set semantics, ordered by the bound centers
    bytes_read: int
    bytes_total: int             # stored bytes of every tensor the network needs (delta bases included)
    levels: tuple[LevelStat, ...]
    exact_records: int           # records decided by the exact full-precision pass
    record_bytes_fraction: float # mean over records of the bytes read when that record was decided
    time_s: float
    version: str = ""
    fallback: Optional[str] = None       # why the whole network ran at full precision, if it did
    exact_only: tuple[str, ...] = ()     # tensors read whole (delta-encoded, format 1, non-float)
    head_from: Optional[str] = None      # node whose exact features the query started from (None: raw inputs)
    stored_features: bool = False        # those features came from the engine's feature store
    stored_features_note: Optional[str] = None  # which stored prefix, or why the raw inputs were used
    feature_bytes_read: int = 0          # bytes of stored features read (not in bytes_read: no weights)
    full_time_s: Optional[float] = None  # full-precision evaluation of the same records (compare=True)
    agreement: Optional[float] = None    # fraction of records whose labels equal full precision's
    extra: dict = field(default_factory=dict)

    @property
    def bytes_fraction(self) -> float:
        return self.bytes_read / self.bytes_total if self.bytes_total else 1.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["labels"] = self.labels.tolist()
        d["bytes_fraction"] = self.bytes_fraction
        d["levels"] = [asdict(s) for s in self.levels]
        return d

    def summary(self) -> dict:
        """Everything but the per-record labels (benchmarks, CLI)."""
        d = self.to_dict()
        d.pop("labels")
        return d
