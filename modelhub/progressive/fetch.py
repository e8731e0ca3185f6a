"""Blob fetches shared by many versions: each distinct blob is fetched once, and the bill is kept.

Versions of one lineage share many blobs (frozen layers, unchanged tensors,
the same high-order segments); evaluating a selection of them progressively
fetches each blob at most once across all of them, so the bytes that matter
are the *union* of what the versions asked for. The ledger counts exactly
that: distinct bytes, requests and the seconds spent waiting for them, and,
with a :class:`BandwidthModel`, what those requests would cost on a link of
given latency and throughput (the benchmark's remote store).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional


@dataclass(frozen=True)
class BandwidthModel:
    """A link to a remote store: every request waits ``latency_s``, then moves ``bytes_per_s``."""
    latency_s: float = 0.02
    bytes_per_s: float = 50e6

    def __post_init__(self) -> None:
        if self.latency_s < 0 or self.bytes_per_s <= 0:
            raise ValueError(f"a link needs latency >= 0 and throughput > 0, got {self.latency_s}, {self.bytes_per_s}")

    def seconds(self, requests: int, nbytes: int) -> float:
        return requests * self.latency_s + nbytes / self.bytes_per_s


class FetchLedger:
    """A caching fetch(blob_hash) -> bytes that counts distinct bytes, requests and wait time.

    ``fetch`` is the store's own read (local object store, remote transport). ``cache=False``
    keeps the counts but not the bytes (the full-precision comparison reads every blob once anyway)."""

    def __init__(self, fetch: Callable[[str], bytes], bandwidth: Optional[BandwidthModel] = None) -> None:
        self._fetch = fetch
        self._blobs: dict[str, bytes] = {}
        self.bandwidth = bandwidth
        self.bytes_fetched = 0
        self.requests = 0
        self.fetch_s = 0.0

    def fetch(self, blob_hash: str) -> bytes:
        blob = self._blobs.get(blob_hash)
        if blob is None:
            t0 = time.perf_counter()
            blob = self._fetch(blob_hash)
            self.fetch_s += time.perf_counter() - t0
            self._blobs[blob_hash] = blob
            self.bytes_fetched += len(blob)
            self.requests += 1
        return blob

    def holds(self, blob_hash: str) -> bool:
        """Already fetched: reading it again costs nothing."""
        return blob_hash in self._blobs

    @property
    def modelled_fetch_s(self) -> Optional[float]:
        """Seconds the fetched bytes would take over the bandwidth model's link (None without one)."""
        return None if self.bandwidth is None else self.bandwidth.seconds(self.requests, self.bytes_fetched)
