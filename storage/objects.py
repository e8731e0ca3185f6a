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
import threading
from pathlib import Path
from typing import Iterator

from .atomic import atomic_write, publish_temps, write_temp
from .errors import CorruptBlobError, MissingBlobError

HASH_NAME = "blake2b-256"


def content_hash(data: bytes | memoryview) -> str:
    return hashlib.blake2b(data, digest_size=32).hexdigest()


class PendingBlobs:
    """Blobs put with ``ObjectStore.put(data, pending=...)``: written to temp files, neither
    fsynced nor under their names yet. :meth:`sync` fsyncs them all in one batch, then renames
    them; a caller must call it before any index names them. Used as a context manager, it
    removes the temps of a command that failed before its sync; a crash leaves only temp files,
    which `dlv gc` removes. Safe to add to from several threads.
    """

    def __init__(self) -> None:
        self._temps: dict[Path, Path] = {}    # final path -> temp path
        self._present: dict[Path, None] = {}  # already under their names (maybe not yet synced)
        self._lock = threading.Lock()

    def holds(self, path: Path) -> bool:
        with self._lock:
            return path in self._temps

    def add_temp(self, path: Path, temp: Path) -> None:
        with self._lock:
            if path in self._temps:  # two threads put the same bytes: keep one
                os.unlink(temp)
            else:
                self._temps[path] = temp

    def add_present(self, path: Path) -> None:
        with self._lock:
            self._present[path] = None

    def __len__(self) -> int:
        return len(self._temps) + len(self._present)

    def __enter__(self) -> "PendingBlobs":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()

    def discard(self) -> None:
        """Remove the temp files not yet synced (the command failed before its batch: a full
        disk, a codec error); what :meth:`sync` published stays."""
        with self._lock:
            temps, self._temps, self._present = self._temps, {}, {}
        for temp in temps.values():
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass

    def sync(self) -> None:
        with self._lock:
            temps, present = self._temps, self._present
            self._temps, self._present = {}, {}
        publish_temps(temps, present)


class ObjectStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path_of(self, blob_hash: str) -> Path:
        if len(blob_hash) != 64 or any(c not in "0123456789abcdef" for c in blob_hash):
            # Hashes come from the catalog or a remote; refusing anything else
            # rules out path traversal through a crafted name.
            raise CorruptBlobError(blob_hash or "<empty>", "not a valid object name")
        return self.root / blob_hash[:2] / blob_hash[2:]

    def put(self, data: bytes | memoryview, *, pending: PendingBlobs | None = None,
            blob_hash: str | None = None) -> str:
        """Store ``data`` (durably) and return its name.

        A blob that is already present is not rewritten, but its mtime is
        refreshed (git's "freshen"): a garbage collector that spares blobs
        younger than a grace period then keeps an old unreferenced blob alive
        for a writer that reuses it until that writer's index entry lands.

        With ``pending`` the blob is written to a temp file and appears under its name, durable,
        only once ``pending.sync()`` ran (one batch of fsyncs for many blobs). A present blob is
        listed too: another writer may have renamed it without syncing its folder yet.

        ``blob_hash``: ``content_hash(data)`` when the caller already computed it from these very
        bytes (a codec names its blobs in the manifest it returns: see
        ``storage.tensors.EncodedTensor.named_blobs``); hashing twice was ~15% of a commit.
        A wrong name is still caught, as damage, by the verified read.
        """
        if blob_hash is None:
            blob_hash = content_hash(data)
        path = self.path_of(blob_hash)
        if pending is None:
            if not self.touch(blob_hash):
                atomic_write(path, data)
        elif self.touch(blob_hash):
            pending.add_present(path)
        elif not pending.holds(path):
            pending.add_temp(path, write_temp(path, data))
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
