"""A feature store at an fsspec URL (``file:///shared/features``, ``s3://bucket/features``).

Same layout, manifests and checksums as :class:`FeatureStore` under
``.dlv/features``; only the file operations go through fsspec, so every worker
of a cluster can read and write one location. Local URLs keep the
temp -> fsync -> rename writes; object stores write each file with one PUT,
which they make visible whole or not at all. Chunks are read into memory
(no memory map) and checksummed on their first read in a process.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np

from ..storage.atomic import atomic_write
from .errors import FeatureStoreError
from .features import _CHUNK, ChunkInfo, FeatureStore


def is_url(location: str | Path) -> bool:
    return "://" in str(location)


def open_feature_store(location: str | Path, on_write: Callable[[ChunkInfo], None] | None = None) -> FeatureStore:
    """A folder path -> FeatureStore; a URL -> FsspecFeatureStore."""
    if is_url(location):
        return FsspecFeatureStore(str(location), on_write)
    return FeatureStore(location, on_write)


class FsspecFeatureStore(FeatureStore):
    def __init__(self, url: str, on_write: Callable[[ChunkInfo], None] | None = None) -> None:
        from fsspec.core import url_to_fs
        try:
            self.fs, root = url_to_fs(url)
        except (ImportError, ValueError) as exc:   # unknown protocol, or its package is missing
            raise FeatureStoreError(f"cannot open the feature location {url}: {exc}; install the fsspec "
                                    "implementation for it (e.g. s3fs) or use a folder path") from None
        super().__init__(PurePosixPath(root), on_write)   # type: ignore[arg-type] - paths on self.fs
        self.url = url
        self._local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    def location(self) -> str:
        return self.url

    def _p(self, path) -> str:
        return str(path)

    # -- layout -------------------------------------------------------------------
    def chunks(self, prefix: str, dataset_uid: str, dtype: str) -> list[ChunkInfo]:
        folder = self._p(self.folder(prefix, dataset_uid, dtype))
        try:
            names = sorted(self.fs.glob(folder + "/r*.json"))
        except FileNotFoundError:
            return []
        out: list[ChunkInfo] = []
        for name in names:
            if not _CHUNK.match(PurePosixPath(name).name):
                continue
            try:
                m = json.loads(self.fs.cat_file(name))
            except (OSError, ValueError):
                continue  # unreadable manifest: the chunk is absent and gets re-extracted
            out.append(ChunkInfo(prefix, dataset_uid, dtype, int(m["start"]), int(m["end"]),
                                 tuple(m["shape"]), int(m["nbytes"]), m["checksum"],
                                 PurePosixPath(name).with_suffix(".npy")))  # type: ignore[arg-type]
        return sorted(out, key=lambda c: (c.start, -c.end))

    def bytes_used(self) -> int:
        root = self._p(self.root)
        return int(self.fs.du(root)) if self.fs.exists(root) else 0

    # -- planner measurements ----------------------------------------------------------
    def load_meta(self, name: str) -> dict:
        try:
            meta = dict(json.loads(self.fs.cat_file(f"{self._p(self.root)}/{name}.json")))
        except (OSError, ValueError, TypeError):
            meta = {}
        if name == "disk" and not meta:
            # the planner's throughput probe writes a local scratch file; measure this location instead
            meta = self._measure()
            self.save_meta("disk", meta)
        return meta

    def save_meta(self, name: str, value: dict) -> None:
        self._put(PurePosixPath(f"{self._p(self.root)}/{name}.json"), json.dumps(value, sort_keys=True).encode())

    def _measure(self, nbytes: int = 8 << 20) -> dict:
        probe = f"{self._p(self.root)}/.probe-{time.time_ns()}.npy"
        data = np.random.default_rng(0).standard_normal(nbytes // 4).astype(np.float32).tobytes()
        t0 = time.perf_counter()
        self.fs.pipe_file(probe, data)
        write = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.fs.cat_file(probe)
        read = time.perf_counter() - t0
        self.fs.rm(probe)
        return {"read": nbytes / max(read, 1e-6), "write": nbytes / max(write, 1e-6)}

    # -- files ------------------------------------------------------------------------
    def _put(self, path, data) -> None:
        if self._local:
            atomic_write(Path(self._p(path)), data)
        else:
            self.fs.pipe_file(self._p(path), bytes(data))

    def _open(self, c: ChunkInfo) -> np.ndarray:
        try:
            data = self.fs.cat_file(self._p(c.path))
        except FileNotFoundError:
            raise FeatureStoreError(f"feature chunk {c.path} is missing; delete {c.path.parent} "
                                    "so it is extracted again") from None
        key = (self._p(c.path), c.nbytes)
        if key not in self._verified:
            if hashlib.blake2b(data, digest_size=32).hexdigest() != c.checksum:
                raise FeatureStoreError(f"feature chunk {c.path} does not match its checksum; delete "
                                        f"{c.path.parent} so it is extracted again")
            self._verified.add(key)
        return np.load(io.BytesIO(data), allow_pickle=False)

    def evict(self, prefix: str, dataset_uid: str, dtype: str) -> None:
        folder = self._p(self.folder(prefix, dataset_uid, dtype))
        if self.fs.exists(folder):
            self.fs.rm(folder, recursive=True)
