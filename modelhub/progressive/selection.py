"""Progressive evaluation of many versions at once, against full precision over the same storage.

``evaluate_selection(weights, refs, inputs)`` runs a progressive query per
version with ONE :class:`~.fetch.FetchLedger` for all of them: a blob that
several versions share (an unchanged layer, a frozen backbone) is fetched once,
and only the segments some version still needs to decide its undecided
records are fetched at all. Then, unless ``compare=False``, the same versions
are evaluated at full precision over the same storage (every blob fetched once,
decoded whole, one forward pass), so the report sets union bytes, fetch,
decode and compute seconds side by side, and checks that every label agrees.

Where bytes are cheap -- weights on local disk stored uncompressed, or a hot
copy holding them decoded -- reading fewer of them cannot pay for the bounds'
extra compute; the report then carries a plain warning (``warning``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..storage.tensors import manifest_blobs
from .access import VersionWeights
from .api import _as_tensor, evaluate_module
from .driver import ProgressiveConfig, exact_module
from .fetch import BandwidthModel, FetchLedger
from .errors import ProgressiveInputError
from .report import ProgressiveReport
from .repo_source import version_network, version_source

#: stored bytes at or above this share of the decoded bytes count as "uncompressed"
UNCOMPRESSED_RATIO = 0.9


@dataclass(frozen=True)
class Placement:
    """Where the weights are read from: a remote (bytes cost) or the local archive, maybe hot."""
    remote: bool = False
    hot_copy: bool = False


@dataclass(frozen=True)
class SelectionProgress:
    """One step of a selection's evaluation, for a terminal progress display."""
    phase: str          # "progressive" | "full precision"
    done: int           # versions finished in this phase
    total: int
    ref: str            # the version just finished
    bytes_fetched: int  # distinct bytes fetched so far in this phase


ProgressCallback = Callable[[SelectionProgress], None]


@dataclass(frozen=True)
class StorageCost:
    """What one way of evaluating the selection cost: distinct bytes, requests, seconds."""
    bytes_fetched: int
    requests: int
    fetch_s: float                  # measured waiting for the store
    decode_s: float                 # decompressing segments, bounding intervals, decoding whole tensors
    compute_s: float                # bounds and forward passes
    modelled_fetch_s: Optional[float] = None   # the fetches over the bandwidth model's link

    @property
    def total_s(self) -> float:
        """Measured decode and compute, plus fetch time (the modelled link's when there is one)."""
        fetch = self.modelled_fetch_s if self.modelled_fetch_s is not None else self.fetch_s
        return fetch + self.decode_s + self.compute_s


@dataclass(frozen=True)
class VersionResult:
    ref: str
    version_id: str
    report: ProgressiveReport
    labels_equal: Optional[bool] = None     # equal to full precision on every record (None: not compared)
    snapshot: Optional[int] = None          # which stored snapshot (None: the committed weights)

    @property
    def label(self) -> str:
        return self.ref if self.snapshot is None else f"{self.ref} snapshot {self.snapshot}"


@dataclass(frozen=True)
class _Item:
    """One set of weights to evaluate: a version's committed weights or one of its snapshots."""
    ref: str
    version_id: str
    snapshot: Optional[int] = None

    @property
    def label(self) -> str:
        return self.ref if self.snapshot is None else f"{self.ref} snapshot {self.snapshot}"


@dataclass(frozen=True)
class SelectionReport:
    n_records: int
    top_k: int
    versions: tuple[VersionResult, ...]
    bytes_stored: int               # union of the stored blobs of every tensor the versions need
    bytes_decoded: int              # their decoded size (distinct tensors)
    progressive: StorageCost
    full: Optional[StorageCost] = None
    warning: Optional[str] = None
    placement: Placement = Placement()
    link: Optional[BandwidthModel] = None   # the bandwidth model the costs were priced with

    @property
    def pays_below_mbps(self) -> Optional[float]:
        """The link throughput (Mbit/s, at the link's latency) below which the progressive run's total
        time beats full precision's, from this run's measured decode and compute seconds: inf when it
        fetched no more bytes and is not slower otherwise, 0.0 when it fetched no fewer bytes (it cannot
        pay at a slower link); None without a comparison or a link."""
        if self.full is None or self.link is None:
            return None
        p, f = self.progressive, self.full
        saved = f.bytes_fetched - p.bytes_fetched
        extra_s = (p.decode_s + p.compute_s - f.decode_s - f.compute_s
                   + (p.requests - f.requests) * self.link.latency_s)
        if saved > 0:
            return float("inf") if extra_s <= 0 else saved / extra_s * 8 / 1e6
        return float("inf") if saved == 0 and extra_s < 0 else 0.0

    @property
    def bytes_fraction(self) -> float:
        return self.progressive.bytes_fetched / self.bytes_stored if self.bytes_stored else 1.0

    @property
    def labels_equal(self) -> Optional[bool]:
        if self.full is None:
            return None
        return all(bool(v.labels_equal) for v in self.versions)

    def to_dict(self) -> dict:
        def cost(c: Optional[StorageCost]):
            return None if c is None else dict(c.__dict__, total_s=c.total_s)
        return {"n_records": self.n_records, "top_k": self.top_k, "bytes_stored": self.bytes_stored,
                "bytes_decoded": self.bytes_decoded, "bytes_fraction": self.bytes_fraction,
                "progressive": cost(self.progressive), "full_precision": cost(self.full),
                "labels_equal": self.labels_equal, "warning": self.warning,
                "pays_below_mbps": _json_number(self.pays_below_mbps),
                "remote": self.placement.remote, "hot_copy": self.placement.hot_copy,
                "versions": [{"version": v.ref, "version_id": v.version_id, "snapshot": v.snapshot,
                              "labels_equal": v.labels_equal,
                              **v.report.summary(), "labels": v.report.labels.tolist()} for v in self.versions]}


def evaluate_selection(weights: VersionWeights, refs: Sequence[str], inputs, top_k: int = 1, *,
                       config: Optional[ProgressiveConfig] = None, compare: bool = True,
                       bandwidth: Optional[BandwidthModel] = None, placement: Placement = Placement(),
                       progress: Optional[ProgressCallback] = None, snapshots: bool = False) -> SelectionReport:
    """Progressive top-k labels of every version in ``refs`` on the same preprocessed ``inputs``.

    ``weights``: the repository's reads, or a remote's (``modelhub.remote.weights``); ``bandwidth``:
    also report what the fetches would take over that link; ``placement``: where the weights live
    (decides the warning); ``progress``: called after each version of each phase; ``snapshots``:
    every stored snapshot of each version (a training run's checkpoints), not only its last."""
    if not refs:
        raise ProgressiveInputError("the selection holds no version; check the query or the refs")
    x = _as_tensor(inputs)
    items = _items(weights, refs, snapshots)
    networks = {it.version_id: version_network(weights, it.version_id) for it in items}

    ledger = FetchLedger(weights.fetch_blob, bandwidth)
    results, sources, read_s, run_s = [], {}, 0.0, 0.0
    for i, it in enumerate(items):
        src = version_source(weights, it.version_id, fetch=ledger.fetch, snapshot=it.snapshot, held=ledger.holds)
        sources[it] = src
        t0 = time.perf_counter()
        report = evaluate_module(networks[it.version_id], x, top_k=top_k, source=src, config=config)
        run_s += time.perf_counter() - t0
        read_s += src.read_s
        results.append(VersionResult(it.ref, it.version_id, replace(report, version=it.label), snapshot=it.snapshot))
        _tell(progress, "progressive", i + 1, len(items), it.label, ledger.bytes_fetched)
    progressive = _cost(ledger, read_s, run_s)
    stored, decoded = _stored_bytes(weights, networks, sources)

    full = None
    if compare:
        full, labels = _full_precision(weights, items, networks, x, top_k, bandwidth, progress)
        results = [replace(r, labels_equal=_same_sets(r.report.labels, labels[i])) for i, r in enumerate(results)]
    return SelectionReport(int(x.shape[0]), top_k, tuple(results), stored, decoded, progressive, full,
                           cost_warning(placement, stored, decoded), placement, bandwidth)


def cost_warning(placement: Placement, stored: int, decoded: int) -> Optional[str]:
    """Why progressive evaluation cannot pay here, or None where bytes cost."""
    if placement.remote:
        return None
    if placement.hot_copy:
        return ("the weights have a hot copy on local disk (decoded, ready to map): reading fewer bytes "
                "cannot pay for the bounds' extra compute here; evaluate without --progressive, or "
                "progressively where bytes cost (--remote NAME)")
    if decoded and stored >= UNCOMPRESSED_RATIO * decoded:
        return (f"the weights are on local disk and barely compressed ({stored} stored of {decoded} decoded "
                "bytes): reading fewer bytes cannot pay for the bounds' extra compute here; evaluate without "
                "--progressive, or progressively where bytes cost (--remote NAME)")
    return None


def _items(weights, refs, snapshots: bool) -> list[_Item]:
    """The weights to evaluate, each once, in the order given."""
    out: list[_Item] = []
    seen: set[str] = set()
    for ref in refs:
        vid = weights.resolve(ref)
        if vid in seen:
            continue
        seen.add(vid)
        if snapshots:
            out += [_Item(ref, vid, s) for s in range(weights.snapshot_count(vid))]
        else:
            out.append(_Item(ref, vid))
    return out


def _full_precision(weights, items, networks, x, top_k, bandwidth, progress):
    """Every version at full precision over the same storage: its blobs fetched once, decoded whole."""
    ledger = FetchLedger(weights.fetch_blob, bandwidth)
    labels, read_s, run_s = [], 0.0, 0.0
    for i, it in enumerate(items):
        src = version_source(weights, it.version_id, fetch=ledger.fetch, snapshot=it.snapshot)
        gm = networks[it.version_id]
        t0 = time.perf_counter()
        module = exact_module(gm, src, [t for t in gm.state_dict() if src.has(t)])
        with torch.no_grad():
            out = module(x)
        labels.append(torch.topk(out, top_k, dim=1).indices.numpy())
        run_s += time.perf_counter() - t0
        read_s += src.read_s
        _tell(progress, "full precision", i + 1, len(items), it.label, ledger.bytes_fetched)
    return _cost(ledger, read_s, run_s), labels


def _cost(ledger: FetchLedger, read_s: float, run_s: float) -> StorageCost:
    decode = max(read_s - ledger.fetch_s, 0.0)
    return StorageCost(ledger.bytes_fetched, ledger.requests, ledger.fetch_s, decode,
                       max(run_s - read_s, 0.0), ledger.modelled_fetch_s)


def _stored_bytes(weights, networks, sources) -> tuple[int, int]:
    """(union of stored blob bytes, decoded bytes of the distinct tensors) the versions need."""
    blobs: dict[str, Optional[int]] = {}
    decoded: dict[str, int] = {}
    for it, src in sources.items():
        vid = it.version_id
        for name in networks[vid].state_dict():
            if not src.has(name):
                continue
            e = src.entries[name]
            decoded[e.tensor_hash or f"{vid}/{name}"] = e.nbytes
            sizes = e.manifest.get("sizes")
            hashes = e.manifest.get("segments") if sizes is not None else None
            if hashes is not None and len(hashes) == len(sizes) and not e.manifest.get("delta"):
                blobs.update(zip(hashes, (int(s) for s in sizes)))
            else:   # format 1, deltas, lossy extras: the catalog's sizes
                for b in manifest_blobs(e.manifest):
                    blobs.setdefault(b, None)
    unknown = [b for b, s in blobs.items() if s is None]
    if unknown:
        listed = weights.blob_sizes(unknown)
        blobs.update({b: listed.get(b, 0) for b in unknown})
    return sum(int(s or 0) for s in blobs.values()), sum(decoded.values())


def _json_number(v: Optional[float]):
    """JSON has no infinity: "inf" instead."""
    return "inf" if v == float("inf") else v


def _same_sets(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and all(set(r) == set(s) for r, s in zip(a.tolist(), b.tolist()))


def _tell(progress, phase, done, total, ref, nbytes) -> None:
    if progress is not None:
        progress(SelectionProgress(phase, done, total, ref, nbytes))
