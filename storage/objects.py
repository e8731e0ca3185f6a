"""Content-addressed, immutable blob store (a folder of files named by their hash).

A blob's name is a digest of its bytes in lowercase hex, stored under a
two-level fan-out (``ab/cdef...``). Names say which hash made them by their
length: 80 hex digits are BLAKE3 with a 40-byte output (what new blobs get), 64
are BLAKE2b-256 (every blob written before BLAKE3, read and verified forever).
BLAKE3 hashes ~6x faster (0.29 against 1.8 CPU-s/GB measured here), and a
commit or checkout hashes every byte it moves; its extendable output gives a
length that no BLAKE2b-256 name has, so old and new names never collide and
no repository-wide switch is needed. Callers write blobs atomically *before* any index
(modelhub: the catalog) references them, so a crash leaves at worst an
unreferenced blob, which a garbage collection removes. Every read verifies the
digest (``read_view`` excepted: its caller checks what it decodes against the tensor's own hash):
a corrupt blob is reported by name, never silently decoded.
"""
from __future__ import annotations

import hashlib
import io
import mmap
import os
import stat
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Iterator

import blake3

from . import directio
from .atomic import atomic_write, fsync_file, publish_temps, write_temp
from .errors import CorruptBlobError, MissingBlobError

HASH_NAME = "blake3-320"
LEGACY_HASH_NAME = "blake2b-256"
#: hex digits of a name, by the hash that made it
NAME_LENGTHS = {HASH_NAME: 80, LEGACY_HASH_NAME: 64}
_HEX = frozenset("0123456789abcdef")
#: below this many bytes one thread hashes faster than handing the input to BLAKE3's pool
_THREADED_HASH_BYTES = 8 << 20
#: ObjectStore.get checks a file above this many bytes against its name before reading it into
#: memory (read twice when intact; a damaged file is never held whole)
VERIFY_FIRST_BYTES = 256 << 20
_VERIFY_CHUNK_BYTES = 8 << 20
#: ObjectStore.read_view maps blobs of at least this many bytes (a smaller one is read: mapping and
#: unmapping cost more than copying it)
MAP_MIN_BYTES = 1 << 20


def content_hash(data: bytes | memoryview) -> str:
    """The name a blob of these bytes gets today (BLAKE3, 80 hex digits)."""
    return blake3_hex(data)


def blake3_hex(*parts: bytes | memoryview) -> str:
    """BLAKE3 of the concatenated parts, 40 bytes as 80 hex digits. The GIL is released while
    hashing, so callers hash from several threads; one large input also uses BLAKE3's threads."""
    big = sum(len(p) for p in parts) >= _THREADED_HASH_BYTES
    h = blake3.blake3(max_threads=blake3.blake3.AUTO if big else 1)
    for part in parts:
        h.update(part)
    return h.hexdigest(length=40)


def blake2b_hex(*parts: bytes | memoryview) -> str:
    """BLAKE2b-256 of the concatenated parts (names and tensor ids written before BLAKE3)."""
    h = hashlib.blake2b(digest_size=32)
    for part in parts:
        h.update(part)
    return h.hexdigest()


def hash_of_name(name: str) -> str | None:
    """Which hash made ``name`` (HASH_NAME or LEGACY_HASH_NAME); None if it is no valid name.
    Names come from the catalog or a remote: anything but lowercase hex of a known length is
    refused, which also rules out path traversal through a crafted name."""
    if not isinstance(name, str) or not _HEX.issuperset(name):
        return None
    for hash_name, length in NAME_LENGTHS.items():
        if len(name) == length:
            return hash_name
    return None


def is_object_name(name: str) -> bool:
    return hash_of_name(name) is not None


def digest_as(name: str, *parts: bytes | memoryview) -> str | None:
    """The digest of ``parts`` by the hash that made ``name`` (None: ``name`` is not a valid name)."""
    hash_name = hash_of_name(name)
    if hash_name is None:
        return None
    return blake3_hex(*parts) if hash_name == HASH_NAME else blake2b_hex(*parts)


def name_matches(name: str, data: bytes | memoryview) -> bool:
    """True when ``data`` is the content ``name`` names, whichever hash made the name."""
    return digest_as(name, data) == name


class PendingBlobs:
    """Blobs put with ``ObjectStore.put(data, pending=...)``: written to temp files, neither
    fsynced nor under their names yet. :meth:`sync` fsyncs them all in one batch, then renames
    them; a caller must call it before any index names them. Used as a context manager, it
    removes the temps of a command that failed before its sync; a crash leaves only temp files,
    which `dlv gc` removes. Safe to add to from several threads.

    A temp of :data:`EARLY_SYNC_BYTES` or more is fsynced in the background as soon as it is
    written, so the disk writes of a large commit overlap its encoding instead of following it
    (1.16 GB of bfloat16: the final batch took 0.42 s of a 3.1 s commit); it is still renamed
    only in :meth:`sync`, after its fsync. Small blobs wait for the batch, where one journal
    commit covers many.
    """

    EARLY_SYNC_BYTES = 1 << 20

    def __init__(self) -> None:
        self._temps: dict[str, str] = {}    # final path -> temp path
        self._present: dict[str, None] = {}  # already under their names (maybe not yet synced)
        self._early: dict[str, Future] = {}  # temp path -> its background fsync
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def holds(self, path: str) -> bool:
        with self._lock:
            return path in self._temps

    def add_temp(self, path: str, temp: str, size: int = 0) -> None:
        with self._lock:
            if path in self._temps:  # two threads put the same bytes: keep one
                os.unlink(temp)
                return
            self._temps[path] = temp
            if size >= self.EARLY_SYNC_BYTES:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(4, thread_name_prefix="storage-early-fsync")
                self._early[temp] = self._pool.submit(fsync_file, temp)

    def _settle_early(self) -> dict[str, Future]:
        """Wait for the background fsyncs and stop their threads; returns them (done). The batch's
        writes are over: the buffers large blobs were written from are let go too."""
        with self._lock:
            early, pool, self._early, self._pool = self._early, self._pool, {}, None
        wait(early.values())
        if pool is not None:
            pool.shutdown()
        directio.release_blob_buffers()
        return early

    def add_present(self, path: str) -> None:
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
        self._settle_early()   # their errors do not matter now: the temps go
        with self._lock:
            temps, self._temps, self._present = self._temps, {}, {}
        for temp in temps.values():
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass

    def sync(self) -> None:
        early = self._settle_early()
        with self._lock:
            temps, present = self._temps, self._present
            self._temps, self._present = {}, {}
        # a background fsync that failed (EIO, a full disk) is simply done again in the batch,
        # which raises it as the batch's own errors are raised
        synced = {temp for temp, done in early.items() if done.exception() is None}
        publish_temps(temps, present, synced=synced)


def _file_matches(name: str, fd: int) -> bool:
    """``name_matches`` over a file's bytes read a chunk at a time (memory: one chunk); leaves the
    file's position at its start."""
    new_name = hash_of_name(name) == HASH_NAME
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO) if new_name else hashlib.blake2b(digest_size=32)
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, _VERIFY_CHUNK_BYTES):
        hasher.update(chunk)
    os.lseek(fd, 0, os.SEEK_SET)
    return (hasher.hexdigest(length=40) if new_name else hasher.hexdigest()) == name


def _mapped(fd: int, size: int) -> memoryview | None:
    """A read-only view of the whole file mapped, or None on a file system that cannot map it."""
    try:
        return memoryview(mmap.mmap(fd, size, access=mmap.ACCESS_READ))
    except (OSError, ValueError):
        return None


def _read_to_end(fd: int) -> bytes:
    """Everything from ``fd``'s position on (FileIO sizes its buffer by fstat, as read_bytes did)."""
    with io.FileIO(fd, "r", closefd=False) as f:
        return f.readall()


def _freshen(path: str) -> bool:
    try:
        os.utime(path)
    except OSError:
        return False
    return True


class ObjectStore:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._root = str(self.root)

    def path_of(self, blob_hash: str) -> Path:
        return Path(self._file_of(blob_hash))

    def _file_of(self, blob_hash: str) -> str:
        """The blob's file as a string: a commit puts thousands of blobs (EfficientNet-Lite0:
        1,235), and building pathlib paths for each cost ~20% of its time."""
        if not is_object_name(blob_hash):
            raise CorruptBlobError(blob_hash or "<empty>", "not a valid object name")
        return os.path.join(self._root, blob_hash[:2], blob_hash[2:])

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
        path = self._file_of(blob_hash)
        if pending is None:
            if not _freshen(path):
                atomic_write(path, data)
        elif _freshen(path):
            pending.add_present(path)
        elif not pending.holds(path):
            pending.add_temp(path, write_temp(path, data), len(data))
        return blob_hash

    def touch(self, blob_hash: str) -> bool:
        """Refresh a present blob's mtime; False when it is absent (or cannot be touched: write it again)."""
        return _freshen(self._file_of(blob_hash))

    def get(self, blob_hash: str, *, verify: bool = True) -> bytes:
        """A blob's bytes, checked against its name unless ``verify`` is False. A file above
        ``VERIFY_FIRST_BYTES`` is checked a chunk at a time before it is read into memory: a
        damaged one of any size (a sparse 100 GB file, say) is reported as corrupt, not read."""
        fd, size = self._open(blob_hash)
        try:
            if verify and size > VERIFY_FIRST_BYTES:
                if not _file_matches(blob_hash, fd):
                    raise CorruptBlobError(blob_hash, "checksum mismatch")
                verify = False
            data = _read_to_end(fd)
        finally:
            os.close(fd)
        if verify and not name_matches(blob_hash, data):
            raise CorruptBlobError(blob_hash, "checksum mismatch")
        return data

    def read_view(self, blob_hash: str) -> bytes | memoryview:
        """A blob's bytes, *unverified*, for a reader that checks what it decodes from them (a
        tensor against its hash): a blob of ``MAP_MIN_BYTES`` or more is mapped read-only instead
        of read. Read, its bytes are copied into fresh memory the process faults in page by page;
        mapped, the decoder reads the page cache itself (a cold checkout of a 1.16 GB bfloat16
        checkpoint spends ~15% less CPU decoding). The map lives as long as the view. Blobs are
        never rewritten in place (written under a temporary name and renamed; gc unlinks, which a
        live map survives), so the bytes cannot change under the reader."""
        fd, size = self._open(blob_hash)
        try:
            view = _mapped(fd, size) if size >= MAP_MIN_BYTES else None
            return view if view is not None else _read_to_end(fd)
        finally:
            os.close(fd)

    def _open(self, blob_hash: str) -> tuple[int, int]:
        """(a read-only descriptor of the blob's file, its size). Anything but a regular file under
        a blob's name (a folder, a pipe: damage, or a hostile copy) is a corrupt blob; a pipe is
        opened without waiting for a writer."""
        try:
            fd = os.open(self._file_of(blob_hash), os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise MissingBlobError(blob_hash) from None
        except IsADirectoryError:   # where a folder cannot even be opened
            raise CorruptBlobError(blob_hash, "not a regular file") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CorruptBlobError(blob_hash, "not a regular file")
        except BaseException:
            os.close(fd)
            raise
        return fd, st.st_size

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
