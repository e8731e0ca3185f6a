"""Where parameter tensors come from: segment reads of the archive, with byte accounting.

A :class:`ManifestSource` serves any set of tensors described by storage
manifests (the repository's ``tensor_data.encoding``, or manifests encoded in
memory for tests and benchmarks). It reads intervals from the first ``k``
segments through ``storage.progressive.read_intervals`` and exact values
through ``storage.tensors.decode_tensor``; every blob is fetched at most once
and counted once, so ``bytes_read`` is what the query really pulled from the
object store.

Tensors that cannot be read progressively (delta-encoded against another
version, format-1 or lossy manifests, non-float dtypes) are *exact-only*: they
have one level, reading it decodes the whole tensor (bases included for
deltas, whose blobs are counted too), and the report lists them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import numpy as np
import torch

from ..storage import progressive as sp
from ..storage import tensors as st
from ..storage_boundary import decode_tensor, encode_tensor, known_mantissa_bits, read_intervals
from .errors import WeightSourceError


@dataclass(frozen=True)
class TensorEntry:
    name: str
    manifest: dict
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    tensor_hash: str = ""


def _progressive(entry: TensorEntry) -> bool:
    m = entry.manifest
    return (m.get("codec") == "segmented" and not m.get("delta") and not m.get("lossy")
            and m.get("packing", "fields") == "fields" and entry.dtype in sp.PROGRESSIVE_DTYPES)


class ManifestSource:
    """Progressive and exact reads of named tensors; counts distinct fetched bytes."""

    def __init__(self, entries: Mapping[str, TensorEntry], fetch: Callable[[str], bytes],
                 resolve_base: Optional[Callable[[str], TensorEntry]] = None,
                 blob_size: Optional[Callable[[str], int]] = None,
                 held: Optional[Callable[[str], bool]] = None) -> None:
        """``held(blob_hash)``: the blob is already at hand (fetched for another version), so reading
        it costs nothing: :meth:`free_levels` says how deep a tensor can start."""
        self.entries = dict(entries)
        self._held = held
        # sizes of blobs a manifest does not record (format 1); default: fetch it, uncounted
        self._blob_size = blob_size or (lambda h: len(fetch(h)))
        self._fetch_raw = fetch
        self._resolve_base = resolve_base
        self._blobs: dict[str, bytes] = {}
        self._exact: dict[str, torch.Tensor] = {}
        self._raw_by_hash: dict[str, bytes] = {}
        self.bytes_read = 0
        self.read_s = 0.0          # seconds inside intervals()/exact(): fetching and decoding
        self._reading = False

    # ----------------------------------------------------------------- geometry
    def has(self, name: str) -> bool:
        return name in self.entries

    def levels(self, name: str) -> int:
        """Number of read levels of a tensor (1 for exact-only tensors)."""
        e = self._entry(name)
        return len(e.manifest["segments"]) if _progressive(e) else 1

    def exact_only(self, name: str) -> bool:
        return not _progressive(self._entry(name))

    def level_bytes(self, name: str) -> list[int]:
        """Stored bytes that reading each level adds (exact-only: the whole tensor, bases included)."""
        e = self._entry(name)
        if _progressive(e):
            return [int(s) for s in e.manifest["sizes"]]
        return [self._closure_bytes(e)]

    def total_bytes(self, name: str) -> int:
        return sum(self.level_bytes(name))

    def free_levels(self, name: str) -> int:
        """Leading levels whose blobs are all at hand already (0 without ``held``)."""
        if self._held is None:
            return 0
        e = self._entry(name)
        if not _progressive(e):
            return 1 if all(self._held(b) for b in st.manifest_blobs(e.manifest)) else 0
        free = 0
        for blob in e.manifest["segments"]:
            if not self._held(blob):
                break
            free += 1
        return free

    def mantissa_bits(self, name: str) -> Optional[list[Optional[int]]]:
        """Per level (index k - 1), the leading mantissa bits known after reading k segments; None at
        levels still missing the exponent or the sign, and for exact-only tensors."""
        e = self._entry(name)
        return known_mantissa_bits(e.manifest) if _progressive(e) else None

    # ----------------------------------------------------------------- reads
    def fetch(self, blob_hash: str) -> bytes:
        blob = self._blobs.get(blob_hash)
        if blob is None:
            blob = self._fetch_raw(blob_hash)
            self._blobs[blob_hash] = blob
            self.bytes_read += len(blob)
        return blob

    def intervals(self, name: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """float64 (lo, hi) shaped like the tensor, from its first k levels; exact when k is the last."""
        return self._timed(self._intervals, name, k)

    def exact(self, name: str) -> torch.Tensor:
        return self._timed(self._exact_tensor, name)

    def _timed(self, read, *args):
        if self._reading:               # a read inside a read (intervals of an exact-only tensor)
            return read(*args)
        self._reading = True
        t0 = time.perf_counter()
        try:
            return read(*args)
        finally:
            self.read_s += time.perf_counter() - t0
            self._reading = False

    def _intervals(self, name: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        e = self._entry(name)
        if not _progressive(e) or k >= self.levels(name):
            x = self.exact(name).to(torch.float64)
            return x, x
        iv = read_intervals(e.manifest, self.fetch, e.nbytes, k)
        lo = torch.from_numpy(iv.lo.reshape(e.shape))
        hi = torch.from_numpy(iv.hi.reshape(e.shape))
        if bool(iv.maybe_nan.any()):   # a possible NaN has no interval: say 'anything'
            nan = torch.from_numpy(iv.maybe_nan.reshape(e.shape))
            lo = torch.where(nan, torch.full_like(lo, -np.inf), lo)
            hi = torch.where(nan, torch.full_like(hi, np.inf), hi)
        return lo, hi

    def _exact_tensor(self, name: str) -> torch.Tensor:
        if name not in self._exact:
            e = self._entry(name)
            raw = self._decode(e)
            self._exact[name] = _to_tensor(raw, e.dtype, e.shape)
        return self._exact[name]

    # ----------------------------------------------------------------- internals
    def _entry(self, name: str) -> TensorEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise WeightSourceError(f"the version has no tensor named {name!r}; commit the weights the network uses") from None

    def _decode(self, e: TensorEntry) -> bytes:
        key = e.tensor_hash or e.name
        if key not in self._raw_by_hash:
            self._raw_by_hash[key] = decode_tensor(e.manifest, self.fetch, e.nbytes, base=self._base_raw)
        return self._raw_by_hash[key]

    def _base_raw(self, tensor_hash: str) -> bytes:
        if self._resolve_base is None:
            raise WeightSourceError("a delta-encoded tensor needs its base, but this source cannot resolve "
                                    "bases; read it from the repository")
        return self._decode(self._resolve_base(tensor_hash))

    def _closure_bytes(self, e: TensorEntry) -> int:
        sizes = e.manifest.get("sizes")
        total = sum(int(s) for s in sizes) if sizes is not None else sum(
            self._blob_size(h) for h in st.manifest_blobs(e.manifest))
        base = st.delta_base(e.manifest)
        if base and self._resolve_base is not None:
            total += self._closure_bytes(self._resolve_base(base))
        return total


def _to_tensor(raw: bytes, dtype: str, shape: tuple[int, ...]) -> torch.Tensor:
    from ..tensorio import raw_to_tensor
    return raw_to_tensor(raw, dtype, list(shape)).clone()


def source_from_state_dict(state: Mapping[str, torch.Tensor]) -> ManifestSource:
    """Encode tensors in memory with the archive's default codec (tests, benchmarks, plain modules)."""
    from ..storage.objects import content_hash
    from ..tensorio import tensor_to_raw

    blobs: dict[str, bytes] = {}
    entries = {}
    for name, t in state.items():
        raw, dtype, shape = tensor_to_raw(t.detach().cpu())
        enc = encode_tensor(raw, dtype, shape)
        for b in enc.blobs:
            blobs[content_hash(b)] = b
        entries[name] = TensorEntry(name, enc.manifest, dtype, tuple(shape), len(raw),
                                    st.tensor_hash(raw, dtype, shape))
    return ManifestSource(entries, blobs.__getitem__)
