"""Large files written past the page cache (``O_DIRECT``), from reusable aligned buffers: the
weights files of a checkout (modelhub's ``weightfiles.SafetensorsWriter``) and the large blobs of
a commit (:func:`write_whole`, from ``atomic.write_temp`` and ``atomic.atomic_write``).

Why: a cold checkout writes every byte of the model once and fsyncs it, a commit every byte of
its blobs. Through the page cache each byte is copied into a freshly allocated cache page first;
measured on a 1.16 GB bf16 checkout here (2 cores, ext4 on a virtual disk), that copy was 38% of the
process's CPU samples (perf) and the checkout's system time swung from 0.4 to 2.3 CPU-s/GB from run
to run as the kernel found the pages; in a commit of the same checkpoint it was 19%.
Written with ``O_DIRECT`` the disk reads the bytes from the decoder's own buffer: no copy, no cache
pages, and a steady cost (``dd`` here: 2.0-2.4 GB/s direct, 0.38-2.2 GB/s buffered and fsynced).

``O_DIRECT`` wants the buffer address, the file offset and the length aligned to the device's
block. A tensor sits at any offset of a safetensors file, so :class:`BufferPool` hands out buffers
placed at the same offset within a block as the tensor is in the file (``phase``): every whole block
inside a tensor goes out directly, and the at most two partial blocks at its ends go through the page
cache (a few KB per tensor, never the same block as a direct write). The buffers are reused from
tensor to tensor, so a checkout does not fault in fresh memory for each one.

A blob of :data:`DIRECT_BLOB_BYTES` or more is written whole: copied into a pooled buffer (a copy
in memory instead of one into the cache), padded to a block with zeros, written directly and cut
back to its length (``ftruncate``). Commit of that checkpoint, through the API, three rounds of
three alternated with ``DLV_DIRECT_WRITES=0``: 668-1,012 MB/s against 746-871, system time
0.32-0.86 against 0.83-1.19 CPU-s/GB. A blob that already lies in a pool's buffer at a block
boundary (a commit encodes its field planes into them: scratch.py) is written from there without
the copy; its last block is then padded with whatever follows it in that buffer (never written
to: a caller may still use it), cut off the same way.

Where the platform has no ``O_DIRECT`` (macOS, Windows), where the file system refuses it (tmpfs),
or where ``DLV_DIRECT_WRITES=0``, files are written through the page cache as before. Nothing here
changes what is written or when it is durable: the writers still fsync before they rename.
"""
from __future__ import annotations

import errno
import mmap
import os
import threading
import weakref

#: alignment of direct writes: a 4 KB block (every device's logical block is at most that) and at
#: least a memory page (so that a direct write never shares a cache page with a buffered one)
ALIGN = max(4096, mmap.PAGESIZE)
#: files smaller than this are written through the page cache: direct writes pay off on large
#: files, and a small file's pages are cheap and often read again at once
DIRECT_MIN_BYTES = 64 << 20
#: blobs smaller than this are written through the page cache (one journal commit covers many of
#: them, and their copy costs little)
DIRECT_BLOB_BYTES = 1 << 20
#: bytes of idle buffers a pool keeps for reuse (more are unmapped when given back)
POOL_KEEP_BYTES = 512 << 20
#: the same for the process-wide pool blobs are written from (emptied when a batch of blobs is
#: published: ``release_blob_buffers``)
BLOB_POOL_KEEP_BYTES = 64 << 20
_GRAIN = 1 << 20   # buffer sizes are rounded up to this, so that similar tensors share buffers


def enabled() -> bool:
    """Direct writes unless ``DLV_DIRECT_WRITES`` is 0/false/no/off or the platform has none."""
    if not hasattr(os, "O_DIRECT"):
        return False
    return os.environ.get("DLV_DIRECT_WRITES", "1").strip().lower() not in ("0", "false", "no", "off")


def open_direct(path: str | os.PathLike) -> int:
    """A second, write-only descriptor of ``path`` that bypasses the page cache; -1 when direct
    writes are off or the file system refuses them (the caller writes through the cache)."""
    if not enabled():
        return -1
    try:
        return os.open(path, os.O_WRONLY | os.O_DIRECT | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return -1


def block_span(pos: int, nbytes: int) -> tuple[int, int]:
    """The whole blocks [start, end) inside bytes [pos, pos + nbytes) (start >= end: none)."""
    return -(-pos // ALIGN) * ALIGN, (pos + nbytes) // ALIGN * ALIGN


def pwrite_all(fd: int, view: memoryview, pos: int) -> None:
    """Write all of ``view`` at ``pos`` (``pwrite`` may write less than asked)."""
    while view.nbytes:
        n = os.pwrite(fd, view, pos)
        view, pos = view[n:], pos + n


class BufferPool:
    """Page-aligned anonymous buffers, handed out for one tensor at a time and reused.

    ``take(n, phase)`` returns ``n`` writable bytes (a uint8 numpy array) starting ``phase`` bytes
    into a page-aligned mapping. ``give(array)`` says the caller is done with it: its mapping is
    reused by a later ``take`` once nothing refers to the array any more (every array, slice or
    memoryview made from it keeps it alive), never before, so a view that outlives its tensor (in
    a traceback, say) still reads what it held. ``close`` unmaps the idle mappings; one still in
    use goes with its last user. Safe from several threads.
    """

    def __init__(self, keep_bytes: int = POOL_KEEP_BYTES) -> None:
        self._free: list[mmap.mmap] = []
        self._given: list[tuple[mmap.mmap, weakref.ref]] = []   # given back, maybe still in use
        self._out: dict[int, mmap.mmap] = {}                     # id of an array handed out -> its mapping
        self._lock = threading.Lock()
        self._keep = keep_bytes

    def take(self, nbytes: int, phase: int = 0):
        import numpy as np   # here, not at import: atomic.py imports this module for commands that never write large files

        if not 0 <= phase < ALIGN:
            raise ValueError(f"phase {phase} is not within a block of {ALIGN} bytes")
        if nbytes == 0:
            return np.zeros(0, dtype=np.uint8)
        need = phase + nbytes
        with self._lock:
            unused = self._collect()
            fits = [m for m in self._free if len(m) >= need]
            owner = min(fits, key=len) if fits else None
            if owner is not None:
                self._free.remove(owner)
        for m in unused:
            _unmap(m)
        if owner is None:
            owner = _anonymous(max(-(-need // _GRAIN) * _GRAIN, _GRAIN))
            if hasattr(mmap, "MADV_HUGEPAGE"):   # fewer page faults on first use, where the kernel allows
                try:
                    owner.madvise(mmap.MADV_HUGEPAGE)
                except OSError:
                    pass
        array = np.frombuffer(owner, dtype=np.uint8, count=nbytes, offset=phase)
        _LENT[id(owner)] = (array.ctypes.data - phase, weakref.ref(owner))
        with self._lock:
            self._out[id(array)] = owner
        return array

    def give(self, array) -> None:
        with self._lock:
            owner = self._out.pop(id(array), None)
            if owner is None:
                return   # an empty buffer, or not this pool's
            _LENT.pop(id(owner), None)
            self._given.append((owner, weakref.ref(array)))

    def _collect(self) -> list[mmap.mmap]:
        """Move the given-back mappings nothing uses any more to the free list (with the lock
        held); returns those beyond what the pool keeps, to unmap."""
        still, unused = [], []
        for owner, ref in self._given:
            if ref() is not None:
                still.append((owner, ref))
            elif sum(len(m) for m in self._free) + len(owner) <= self._keep:
                self._free.append(owner)
            else:
                unused.append(owner)
        self._given = still
        return unused

    def close(self) -> None:
        """Unmap the idle buffers (one still in use is unmapped when its last user lets go)."""
        with self._lock:
            unused = self._collect() + self._free
            self._free, self._given = [], []
        for m in unused:
            _unmap(m)


#: the mappings pools have handed out and not taken back, by id: (address, mapping). A blob that
#: lies in one is written from it directly, its last block padded with whatever follows it there
_LENT: dict[int, tuple[int, weakref.ref]] = {}


def _lent_span(view: memoryview, nbytes: int) -> memoryview | None:
    """``nbytes`` (>= ``view.nbytes``) of a lent mapping starting where ``view`` does, when ``view``
    starts on a block inside one that holds that many bytes from there; else None."""
    if not _LENT or view.readonly or not view.nbytes:   # a pool's buffers are writable
        return None
    import numpy as np   # loaded already: whoever lent a buffer made it with numpy

    address = np.frombuffer(view, dtype=np.uint8).ctypes.data
    if address % ALIGN:
        return None
    for start, ref in list(_LENT.values()):
        owner = ref()
        if owner is not None and start <= address and address + nbytes <= start + len(owner):
            return memoryview(owner)[address - start:address - start + nbytes]
    return None


def _anonymous(size: int) -> mmap.mmap:
    """Private anonymous memory (``mmap(-1, size)`` alone is shared memory on Unix: shmem pages,
    zeroed through the page cache's path)."""
    private = getattr(mmap, "MAP_PRIVATE", None)
    if private is None:   # Windows: anonymous maps are private there
        return mmap.mmap(-1, size)
    return mmap.mmap(-1, size, flags=private | getattr(mmap, "MAP_ANONYMOUS", 0))


def _unmap(m: mmap.mmap) -> None:
    try:
        m.close()
    except BufferError:
        pass   # a view of it is still alive somewhere: the mapping goes with it


_BLOB_POOL: BufferPool | None = None
_BLOB_POOL_LOCK = threading.Lock()
_refused = False   # a file system refused a direct blob write: the process stops trying


def write_whole(fd: int, data) -> bool:
    """Write all of ``data`` at the start of ``fd`` (a new, empty file opened for writing) past the
    page cache. False, with nothing written and the descriptor as it was, where ``data`` is too
    small to pay, direct writes are off, or the file system refuses them (setting ``O_DIRECT``
    fails on tmpfs, say): the caller then writes it through the cache."""
    global _refused
    view = memoryview(data).cast("B")
    if _refused or view.nbytes < DIRECT_BLOB_BYTES or not enabled():
        return False
    import fcntl   # Unix only, like O_DIRECT itself (enabled() is False elsewhere)

    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT)
    except OSError:
        _refused = True
        return False
    try:
        written = _write_padded(fd, view)
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    if not written:
        os.ftruncate(fd, 0)   # whatever a refused write left: the caller writes it all again
    return written


def _write_padded(fd: int, view: memoryview) -> bool:
    """``view`` at offset 0 of ``fd`` (O_DIRECT), padded to whole blocks and cut back; False when
    the file system refused the direct write."""
    global _refused
    size = view.nbytes
    padded = -(-size // ALIGN) * ALIGN
    span = _lent_span(view, padded)   # a blob encoded into a pool's buffer: written from there
    pool = copy = None
    if span is None:
        pool = _blob_pool()
        copy = pool.take(padded)
        span = memoryview(copy)
        span[:size] = view
        span[size:] = bytes(padded - size)
    try:
        try:
            pwrite_all(fd, span, 0)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            _refused = True
            return False
    finally:
        span.release()
        if pool is not None:
            pool.give(copy)
    os.ftruncate(fd, size)
    return True


def _blob_pool() -> BufferPool:
    global _BLOB_POOL
    with _BLOB_POOL_LOCK:
        if _BLOB_POOL is None:
            _BLOB_POOL = BufferPool(BLOB_POOL_KEEP_BYTES)
        return _BLOB_POOL


def release_blob_buffers() -> None:
    """Unmap the idle buffers blobs were written from (the end of a batch of blob writes: a
    long-running process keeps no memory for the next commit)."""
    with _BLOB_POOL_LOCK:
        pool = _BLOB_POOL
    if pool is not None:
        pool.close()
