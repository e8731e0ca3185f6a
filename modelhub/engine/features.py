"""The feature store: materialized frozen-prefix outputs under ``.dlv/features/``.

One folder per (prefix content hash, dataset uid, dtype); inside, chunks of
consecutive records as ``.npy`` files (memory-mappable) with a JSON manifest
holding the checksum. A chunk file is written atomically first and its
manifest last, so a crash leaves at worst an orphan ``.npy`` that is never
read. Records are append-only, so a later dataset version reuses every chunk
and only the new records are extracted.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..storage.atomic import atomic_write
from .errors import FeatureStoreError

_CHUNK = re.compile(r"^r(\d{10})-(\d{10})\.json$")


@dataclass(frozen=True)
class ChunkInfo:
    prefix: str
    dataset_uid: str
    dtype: str
    start: int
    end: int
    shape: tuple[int, ...]     # full chunk shape (end - start, ...)
    nbytes: int
    checksum: str              # blake2b-256 of the .npy file
    path: Path


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


class FeatureStore:
    def __init__(self, root: Path | str, on_write: Callable[[ChunkInfo], None] | None = None) -> None:
        self.root = Path(root)
        self.on_write = on_write          # lets the repository mirror chunks into its catalog
        self._verified: set[tuple[str, int]] = set()
        self.bytes_read = 0
        self.bytes_written = 0

    # -- layout -------------------------------------------------------------------
    def folder(self, prefix: str, dataset_uid: str, dtype: str) -> Path:
        key = hashlib.blake2b(f"{prefix}|{dataset_uid}|{dtype}".encode(), digest_size=20).hexdigest()
        return self.root / key[:2] / key

    def chunks(self, prefix: str, dataset_uid: str, dtype: str) -> list[ChunkInfo]:
        folder = self.folder(prefix, dataset_uid, dtype)
        if not folder.exists():
            return []
        out: list[ChunkInfo] = []
        for manifest in sorted(folder.glob("r*.json")):
            if not _CHUNK.match(manifest.name):
                continue
            try:
                m = json.loads(manifest.read_text())
            except (OSError, ValueError):
                continue  # unreadable manifest: treat the chunk as absent; it is re-extracted
            out.append(ChunkInfo(prefix, dataset_uid, dtype, int(m["start"]), int(m["end"]),
                                 tuple(m["shape"]), int(m["nbytes"]), m["checksum"],
                                 manifest.with_suffix(".npy")))
        return sorted(out, key=lambda c: (c.start, -c.end))

    def stored_records(self, prefix: str, dataset_uid: str, dtype: str) -> int:
        """Length of the run of records [0, k) covered by stored chunks."""
        covered = 0
        for c in self.chunks(prefix, dataset_uid, dtype):
            if c.start <= covered < c.end:
                covered = c.end
        return covered

    def bytes_used(self) -> int:
        if not self.root.exists():
            return 0
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    # -- planner measurements kept next to the features ------------------------------
    def load_meta(self, name: str) -> dict:
        try:
            return dict(json.loads((self.root / f"{name}.json").read_text()))
        except (OSError, ValueError, TypeError):
            return {}   # missing or unreadable: measure again

    def save_meta(self, name: str, value: dict) -> None:
        atomic_write(self.root / f"{name}.json", json.dumps(value, sort_keys=True).encode())

    # -- writing ----------------------------------------------------------------------
    def write_chunk(self, prefix: str, dataset_uid: str, dtype: str, start: int, array: np.ndarray) -> ChunkInfo:
        array = np.ascontiguousarray(array, dtype=np.dtype(dtype))
        end = start + int(array.shape[0])
        folder = self.folder(prefix, dataset_uid, dtype)
        base = folder / f"r{start:010d}-{end:010d}"
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        data = buf.getbuffer()
        checksum = hashlib.blake2b(data, digest_size=32).hexdigest()
        self._put(base.with_suffix(".npy"), data)
        manifest = {"start": start, "end": end, "shape": list(array.shape), "dtype": dtype,
                    "nbytes": len(data), "checksum": checksum, "prefix": prefix, "dataset": dataset_uid}
        self._put(base.with_suffix(".json"), json.dumps(manifest, sort_keys=True).encode())
        self.bytes_written += len(data)
        info = ChunkInfo(prefix, dataset_uid, dtype, start, end, tuple(array.shape), len(data),
                         checksum, base.with_suffix(".npy"))
        self._verified.add((str(info.path), info.nbytes))
        if self.on_write is not None:
            self.on_write(info)
        return info

    def _put(self, path: Path, data) -> None:
        # temp -> fsync -> rename: a retried writer of the same chunk (names are the
        # record range) replaces the file whole, never interleaves with it
        atomic_write(path, data)

    def location(self) -> str:
        """Where workers of a distributed backend open this store (open_feature_store)."""
        return str(self.root)

    # -- reading ---------------------------------------------------------------------
    def read(self, prefix: str, dataset_uid: str, dtype: str, lo: int, hi: int) -> np.ndarray:
        """Records [lo, hi) as one array; chunks are memory-mapped and checksummed once."""
        parts: list[np.ndarray] = []
        at = lo
        for c in self.chunks(prefix, dataset_uid, dtype):
            if c.end <= at or c.start > at:
                continue
            arr = self._open(c)
            take = arr[at - c.start:min(hi, c.end) - c.start]
            parts.append(take)
            at = c.start + (at - c.start) + take.shape[0]
            if at >= hi:
                break
        if at < hi:
            raise FeatureStoreError(
                f"stored features of prefix {prefix[:12]} lack records [{at}, {hi}); "
                "run the evaluation again to re-extract them"
            )
        out = np.concatenate(parts) if len(parts) > 1 else np.array(parts[0])
        self.bytes_read += out.nbytes
        return out

    def _open(self, c: ChunkInfo) -> np.ndarray:
        key = (str(c.path), c.nbytes)
        try:
            if key not in self._verified:
                if _digest(c.path) != c.checksum:
                    raise FeatureStoreError(
                        f"feature chunk {c.path} does not match its checksum; delete "
                        f"{c.path.parent} (or run `dlv gc`) so it is extracted again"
                    )
                self._verified.add(key)
            return np.load(c.path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise FeatureStoreError(
                f"feature chunk {c.path} is missing; delete {c.path.parent} so it is extracted again"
            ) from None

    def evict(self, prefix: str, dataset_uid: str, dtype: str) -> None:
        shutil.rmtree(self.folder(prefix, dataset_uid, dtype), ignore_errors=True)
