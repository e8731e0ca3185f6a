"""Content-addressed, immutable blob store (a folder of files named by their hash).

A blob's name is the BLAKE2b-256 digest of its bytes, stored under a two-level
fan-out (``ab/cdef...``). Callers write blobs atomically *before* any index
(modelhub: the catalog) references them, so a crash leaves at worst an
unreferenced blob, which a garbage collection removes. Every read verifies the
digest: a corrupt blob is reported by name, never silently decoded.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator

from .atomic import atomic_write
from .errors import CorruptBlobError, MissingBlobError

HASH_NAME = "blake2b-256"


def content_hash(data: bytes | memoryview) -> str:
    return hashlib.blake2b(data, digest_size=32).hexdigest()


class ObjectStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path_of(self, blob_hash: str) -> Path:
        if len(blob_hash) != 64 or any(c not in "0123456789abcdef" for c in blob_hash):
            # Hashes come from the catalog or a remote; refusing anything else
            # rules out path traversal through a crafted name.
            raise CorruptBlobError(blob_hash or "<empty>", "not a valid object name")
        return self.root / blob_hash[:2] / blob_hash[2:]

    def put(self, data: bytes | memoryview) -> str:
        """Store ``data`` (durably) and return its name.

        A blob that is already present is not rewritten, but its mtime is
        refreshed (git's "freshen"): a garbage collector that spares blobs
        younger than a grace period then keeps an old unreferenced blob alive
        for a writer that reuses it until that writer's index entry lands.
        """
        blob_hash = content_hash(data)
        if not self.touch(blob_hash):
            atomic_write(self.path_of(blob_hash), data)
        return blob_hash

    def touch(self, blob_hash: str) -> bool:
        """Refresh a present blob's mtime; False when it is absent (or cannot be touched: write it again)."""
        try:
            os.utime(self.path_of(blob_hash))
        except OSError:
            return False
        return True

    def get(self, blob_hash: str, *, verify: bool = True) -> bytes:
        path = self.path_of(blob_hash)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise MissingBlobError(blob_hash) from None
        if verify and content_hash(data) != blob_hash:
            raise CorruptBlobError(blob_hash, "checksum mismatch")
        return data

    def has(self, blob_hash: str) -> bool:
        return self.path_of(blob_hash).exists()

    def size(self, blob_hash: str) -> int:
        return self.path_of(blob_hash).stat().st_size

    def delete(self, blob_hash: str) -> None:
        try:
            os.unlink(self.path_of(blob_hash))
        except FileNotFoundError:
            pass

    def verify(self, blob_hash: str) -> None:
        self.get(blob_hash, verify=True)

    def __iter__(self) -> Iterator[str]:
        if not self.root.exists():
            return
        for sub in sorted(self.root.iterdir()):
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for f in sorted(sub.iterdir()):
                if f.name.startswith(".tmp-"):
                    continue
                yield sub.name + f.name
