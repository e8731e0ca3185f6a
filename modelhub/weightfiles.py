"""Safetensors files read and written one tensor at a time (streaming commit and checkout).

A model of many gigabytes never needs to be in memory at once: a
:class:`WeightsSource` maps the file(s) (``mmap``), hands out each tensor's
bytes as a zero-copy view and drops the pages again once the caller is done
with it (``madvise(MADV_DONTNEED)``: clean file pages, so nothing is lost and
the process's resident set stays near the tensors in flight; a streaming commit
releases a new tensor once it is hashed and encoded). Sharded checkpoints as
Hugging Face writes them (``model-00001-of-00003.safetensors`` ... plus
``model.safetensors.index.json``) read as one model, in shard order.

:class:`SafetensorsWriter` is the other direction: the header is computed from
(name, dtype, shape) alone, the file is preallocated, and each tensor is
written at its offset (``os.pwrite``: any thread, any order), then the file is
fsynced and renamed into place. Every EARLY_SYNC_BYTES written, a background
thread flushes what is written so far (``fdatasync``), so the disk works while
the next tensors decode and the final fsync finds little left: fsyncing a
1.16 GB checkout only at the end was a third of its wall time.

The header is parsed here rather than through ``safetensors.safe_open``: the
byte offsets are needed for zero-copy views and page release, and
``safe_open`` does not expose them. The checks are the format's own
(contiguous, in-bounds, size = shape x dtype).
"""
from __future__ import annotations

import errno
import json
import math
import mmap
import os
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from .storage.atomic import new_temp
from .storage import directio
from .errors import InputError, WeightsError

#: safetensors dtype code <-> torch dtype name (the archive's dtype names)
ST_CODES: Mapping[str, str] = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "uint16": "U16", "uint32": "U32", "uint64": "U64",
}
TORCH_NAMES: Mapping[str, str] = {code: name for name, code in ST_CODES.items()}
_SIZES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4, "int16": 2, "int8": 1,
          "uint8": 1, "bool": 1, "float8_e4m3fn": 1, "float8_e5m2": 1, "uint16": 2, "uint32": 4, "uint64": 8}

INDEX_NAME = "model.safetensors.index.json"
#: key under which a sharded commit records its shard layout in the version's weights metadata;
#: never written into a checked-out file's own metadata
SHARDS_KEY = "dlv.shards"
_SHARD_RE = re.compile(r"^(?P<stem>.+)-(?P<k>\d+)-of-(?P<n>\d+)\.safetensors$")
_HEADER_LIMIT = 100 << 20   # the format's own limit on the JSON header


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a weights file: where its bytes are, and what they are."""
    name: str
    dtype: str          # torch dtype name
    shape: tuple[int, ...]
    shard: int          # index into WeightsSource.files
    start: int          # absolute byte offsets in that file
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Shard:
    file: str                     # file name as the source had it
    count: int                    # tensors in it (consecutive in committed order)
    metadata: dict | None         # its own __metadata__


class WeightsSource(Mapping[str, TensorSpec]):
    """A safetensors file or sharded checkpoint, mapped; iterate it in file order.

    ``source[name]`` is a :class:`TensorSpec` (no bytes read); ``view(spec)``
    the tensor's bytes without copying; ``release(spec)`` drops its pages.
    """

    def __init__(self, files: Sequence[Path], specs: Sequence[TensorSpec], metadatas: Sequence[dict | None],
                 index_metadata: dict | None, sharded: bool) -> None:
        self.files = tuple(files)
        self.specs = tuple(specs)
        self._by_name = {s.name: s for s in self.specs}
        self._metadatas = tuple(metadatas)
        self.index_metadata = index_metadata
        self.sharded = sharded
        self._maps: dict[int, mmap.mmap] = {}

    # -- Mapping --------------------------------------------------------------
    def __getitem__(self, name: str) -> TensorSpec:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return (s.name for s in self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    # -- bytes ----------------------------------------------------------------
    def _map(self, shard: int) -> mmap.mmap | None:
        mm = self._maps.get(shard)
        if mm is None:
            with open(self.files[shard], "rb") as f:
                if os.fstat(f.fileno()).st_size == 0:
                    return None
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self._maps[shard] = mm
        return mm

    def view(self, spec: TensorSpec) -> memoryview:
        if spec.nbytes == 0:
            return memoryview(b"")
        return memoryview(self._map(spec.shard))[spec.start:spec.end]

    def release(self, spec: TensorSpec) -> None:
        """Drop the tensor's pages from this process (they stay in the page cache)."""
        mm = self._maps.get(spec.shard)
        if mm is None or spec.nbytes == 0 or not hasattr(mmap, "MADV_DONTNEED"):
            return
        page = mmap.PAGESIZE
        start = spec.start - spec.start % page
        try:
            mm.madvise(mmap.MADV_DONTNEED, start, spec.end - start)
        except (OSError, ValueError):
            pass  # only a memory optimization

    def close(self) -> None:
        for mm in self._maps.values():
            try:
                mm.close()
            except BufferError:
                pass  # a view is still alive; the map closes when it is collected
        self._maps.clear()

    def __enter__(self) -> "WeightsSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what a commit records ---------------------------------------------------
    @property
    def total_bytes(self) -> int:
        return sum(s.nbytes for s in self.specs)

    @property
    def largest_bytes(self) -> int:
        return max((s.nbytes for s in self.specs), default=0)

    def weights_meta(self) -> dict | None:
        """The metadata a checkout needs to write the same file(s) back."""
        if not self.sharded:
            return self._metadatas[0]
        counts = [0] * len(self.files)
        for s in self.specs:
            counts[s.shard] += 1
        layout = {"index_metadata": self.index_metadata,
                  "shards": [[f.name, c, m] for f, c, m in zip(self.files, counts, self._metadatas)]}
        return dict(self._metadatas[0] or {}) | {SHARDS_KEY: json.dumps(layout, sort_keys=True)}


def is_streamable(path: str | os.PathLike) -> bool:
    """Whether ``path`` names something :func:`open_weights` reads: a .safetensors file, an index
    JSON, or a folder holding either."""
    p = Path(path)
    if p.is_dir():
        return (p / INDEX_NAME).is_file() or any(p.glob("*.safetensors"))
    return p.suffix == ".safetensors" or p.name.endswith(".safetensors.index.json")


def open_weights(path: str | os.PathLike) -> WeightsSource:
    """Open a safetensors file, a sharded checkpoint's index JSON, or a folder holding either."""
    p = Path(path)
    if p.is_dir():
        index = p / INDEX_NAME
        if index.is_file():
            return _open_index(index)
        singles = sorted(p.glob("*.safetensors"))
        if len(singles) == 1:
            return _open_files([singles[0]], None, sharded=False)
        if not singles:
            raise WeightsError(f"{p} holds no .safetensors file and no {INDEX_NAME}; point at the weights file")
        return _open_shards_by_name(p, singles)
    if not p.is_file():
        raise WeightsError(f"weights file {p} does not exist; check the path")
    if p.name.endswith(".safetensors.index.json"):
        return _open_index(p)
    if p.suffix != ".safetensors":
        raise WeightsError(f"{p}: streaming reads .safetensors files (or a sharded checkpoint's index JSON)")
    return _open_files([p], None, sharded=False)


def _open_index(index: Path) -> WeightsSource:
    try:
        doc = json.loads(index.read_text(encoding="utf-8"))
        weight_map = doc["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise TypeError
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise WeightsError(f"{index} is not a safetensors index (JSON with a \"weight_map\"); "
                           "re-save the checkpoint with save_pretrained") from None
    names = sorted(set(weight_map.values()), key=_shard_order)
    files = []
    for name in names:
        f = index.parent / name
        if Path(name).name != name or not f.is_file():
            raise WeightsError(f"{index} names shard {name!r}, which is not in {index.parent}; copy every shard next to it")
        files.append(f)
    src = _open_files(files, doc.get("metadata"), sharded=True)
    listed = {n for n in weight_map}
    held = set(src)
    if listed != held:
        missing = sorted(listed - held) or sorted(held - listed)
        raise WeightsError(f"{index} and its shards disagree about tensor {missing[0]!r}; re-save the checkpoint")
    return src


def _open_shards_by_name(folder: Path, files: list[Path]) -> WeightsSource:
    if not all(_SHARD_RE.match(f.name) for f in files):
        raise WeightsError(f"{folder} holds several .safetensors files and no {INDEX_NAME}; "
                           "point at one file or at the index")
    return _open_files(sorted(files, key=lambda f: _shard_order(f.name)), None, sharded=True)


def _shard_order(name: str) -> tuple:
    m = _SHARD_RE.match(name)
    return (m.group("stem"), int(m.group("k"))) if m else (name, 0)


def _open_files(files: list[Path], index_metadata: dict | None, *, sharded: bool) -> WeightsSource:
    specs: list[TensorSpec] = []
    metadatas: list[dict | None] = []
    seen: set[str] = set()
    for shard, f in enumerate(files):
        shard_specs, meta = read_header(f, shard)
        for s in shard_specs:
            if s.name in seen:
                raise WeightsError(f"tensor {s.name!r} is in two shards ({f.name} and an earlier one); re-save the checkpoint")
            seen.add(s.name)
        specs.extend(shard_specs)
        metadatas.append(meta)
    return WeightsSource(files, specs, metadatas, index_metadata, sharded)


def read_header(path: Path, shard: int = 0) -> tuple[list[TensorSpec], dict | None]:
    """The tensors of one safetensors file in data order, and its ``__metadata__``."""
    def bad(why: str) -> WeightsError:
        return WeightsError(f"{path} is not a valid safetensors file ({why}); re-export it with safetensors.torch.save_file")

    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise bad("shorter than its 8-byte header length")
            n = int.from_bytes(head, "little")
            if n > min(size - 8, _HEADER_LIMIT):
                raise bad("header length beyond the end of the file")
            header = json.loads(f.read(n))
    except OSError as exc:
        raise WeightsError(f"cannot read {path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad("header is not JSON") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise bad("__metadata__ is not a map of strings")
    base = 8 + n
    specs = []
    try:
        for name, info in header.items():
            dtype = TORCH_NAMES[info["dtype"]]
            shape = tuple(int(d) for d in info["shape"])
            start, end = (int(o) for o in info["data_offsets"])
            numel = 1
            for d in shape:
                if d < 0:
                    raise ValueError
                numel *= d
            if not 0 <= start <= end or end - start != numel * _SIZES[dtype]:
                raise bad(f"tensor {name!r} has {end - start} bytes for shape {list(shape)} {dtype}")
            specs.append(TensorSpec(name, dtype, shape, shard, base + start, base + end))
    except (KeyError, TypeError, ValueError):
        raise bad("a tensor entry lacks dtype, shape or data_offsets, or has an unknown dtype") from None
    specs.sort(key=lambda s: (s.start, s.end))
    pos = base
    for s in specs:
        if s.start != pos:
            raise bad("tensor data is not contiguous")
        pos = s.end
    if pos != size:
        raise bad(f"the tensors end at byte {pos} but the file has {size}")
    return specs, meta


# -- writing ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


#: written bytes after which a writer flushes them in the background (see the module docstring)
EARLY_SYNC_BYTES = 64 << 20
_SYNC_POOL: ThreadPoolExecutor | None = None
_SYNC_POOL_LOCK = threading.Lock()


def _flush_data(fd: int) -> None:
    """The file's data to disk (``fdatasync``; ``fsync`` where there is none, as on macOS)."""
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def _sync_pool() -> ThreadPoolExecutor:
    global _SYNC_POOL
    with _SYNC_POOL_LOCK:
        if _SYNC_POOL is None:
            _SYNC_POOL = ThreadPoolExecutor(2, thread_name_prefix="weights-sync")
        return _SYNC_POOL


class SafetensorsWriter:
    """One safetensors file written tensor by tensor (``write`` and ``tensor_buffer`` are safe
    from several threads).

    ``direct``: write a file of at least ``directio.DIRECT_MIN_BYTES`` past the page cache
    (``storage.directio``); tensors filled into :meth:`tensor_buffer` then go to disk without a
    copy. ``pool``: where those buffers come from (one pool can serve the shards of a checkout).
    """

    def __init__(self, path: Path, tensors: Sequence[OutTensor], metadata: Mapping[str, str] | None, *,
                 direct: bool = False, pool: directio.BufferPool | None = None) -> None:
        for t in tensors:
            if t.dtype not in ST_CODES:
                raise InputError(f"tensor {t.name!r} is {t.dtype}, which safetensors cannot hold")
        header = _safetensors_order(tensors, metadata)
        by_name = {t.name: t for t in tensors}
        offset = 0
        self.offsets: dict[str, int] = {}
        self.sizes: dict[str, int] = {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            t = by_name[name]
            entry["shape"] = list(t.shape)
            entry["data_offsets"] = [offset, offset + t.nbytes]
            self.offsets[name] = offset
            self.sizes[name] = t.nbytes
            offset += t.nbytes
        head = json.dumps(header, separators=(",", ":")).encode()
        head += b" " * (-len(head) % 8)   # tensor data 8-byte aligned, as safetensors writes it
        self.path = Path(path)
        self.data_start = 8 + len(head)
        self.size = self.data_start + offset
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = new_temp(self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")   # umask applies
        self.fd = fd
        self.direct_fd = -1                      # the same file opened O_DIRECT, when written so
        self._direct_refused = False             # the file system took O_DIRECT but not its writes
        self._pool = pool if pool is not None else directio.BufferPool()
        self._own_pool = pool is None
        self._lock = threading.Lock()
        self._unsynced = 0                       # bytes written since the last background flush began
        self._flush: Future | None = None        # the background flush in flight, if any
        try:
            os.pwrite(fd, len(head).to_bytes(8, "little") + head, 0)
            os.ftruncate(fd, self.size)
            if direct and self.size >= directio.DIRECT_MIN_BYTES:
                self.direct_fd = directio.open_direct(self.tmp)
        except BaseException:
            self.abort()
            raise

    @property
    def writes_direct(self) -> bool:
        return self.direct_fd >= 0 and not self._direct_refused

    @contextmanager
    def tensor_buffer(self, name: str) -> Iterator[memoryview]:
        """A buffer of tensor ``name``'s size to fill; written to the tensor's place in the file
        when the block ends without an error. It is placed as the tensor is within a disk block,
        so a direct write takes it as it is."""
        pos = self.data_start + self.offsets[name]
        buffer = self._pool.take(self.sizes[name], pos % directio.ALIGN)
        try:
            view = memoryview(buffer)
            yield view
            self._write_at(view, pos, placed=True)
        finally:
            self._pool.give(buffer)

    def write(self, name: str, data) -> None:
        """Write tensor ``name``'s bytes (any buffer of its size)."""
        view = memoryview(data).cast("B")
        if view.nbytes != self.sizes[name]:
            raise InputError(f"tensor {name!r} is {self.sizes[name]} bytes; got {view.nbytes}")
        if self.writes_direct and view.nbytes >= 2 * directio.ALIGN:
            with self.tensor_buffer(name) as buf:   # one copy in memory instead of one into the cache
                buf[:] = view
            return
        self._write_at(view, self.data_start + self.offsets[name], placed=False)

    def _write_at(self, view: memoryview, pos: int, *, placed: bool) -> None:
        """``view`` at file offset ``pos``: its whole blocks directly when it is ``placed`` (its
        address at the same offset within a block as ``pos``) and the file is written directly,
        the rest through the page cache."""
        size = view.nbytes
        start, end = directio.block_span(pos, size)
        if placed and end > start and self.writes_direct:
            try:
                directio.pwrite_all(self.direct_fd, view[start - pos:end - pos], start)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._direct_refused = True   # every write goes through the cache from now on
            else:
                directio.pwrite_all(self.fd, view[:start - pos], pos)
                directio.pwrite_all(self.fd, view[end - pos:], end)
                return
        directio.pwrite_all(self.fd, view, pos)
        with self._lock:
            self._unsynced += size
            if self._unsynced >= EARLY_SYNC_BYTES and (self._flush is None or self._flush.done()):
                self._raise_flush_error()
                self._unsynced = 0
                self._flush = _sync_pool().submit(_flush_data, self.fd)

    def _raise_flush_error(self) -> None:
        """A background flush's error (EIO, a full disk) is the write's: the kernel reports a
        writeback error to one flush only, so the final fsync would not see it again."""
        if self._flush is not None:
            flush, self._flush = self._flush, None
            flush.result()

    def _settle(self) -> None:
        with self._lock:
            flush = self._flush
        if flush is not None:
            flush.exception()          # wait: the fd must outlive a flush that uses it

    def finish(self) -> None:
        """Make the file durable under a temporary name (``publish`` renames it). The fsync also
        flushes the device's cache, where direct writes may still sit."""
        self._settle()
        with self._lock:
            self._raise_flush_error()
        os.fsync(self.fd)
        self._close()

    def publish(self) -> None:
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._settle()
        self._close()
        Path(self.tmp).unlink(missing_ok=True)

    def _close(self) -> None:
        for attr in ("direct_fd", "fd"):
            fd = getattr(self, attr, -1)
            if fd >= 0:
                setattr(self, attr, -1)
                os.close(fd)
        if getattr(self, "_own_pool", False):
            self._pool.close()


def _safetensors_order(tensors: Sequence[OutTensor], metadata: Mapping[str, str] | None) -> dict:
    """The header safetensors itself would write for these tensors (its key order: metadata,
    then by dtype and name), shapes and offsets still to fill in: asked of safetensors'
    serializer with empty tensors of the same names and dtypes, so a checkout writes the bytes
    ``safetensors.torch.save`` would. Its torch-free entry point: importing torch was most of
    a cold checkout's start-up."""
    from safetensors import serialize

    try:
        from safetensors import TensorSpec as EmptySpec   # recent safetensors (0.8 here); older ones take dicts
        empty = {t.name: EmptySpec(dtype=t.dtype, shape=(0,), data_ptr=0, data_len=0) for t in tensors}
    except ImportError:
        empty = {t.name: {"dtype": t.dtype, "shape": [0], "data": b""} for t in tensors}
    dummy = bytes(serialize(empty, metadata=dict(metadata) if metadata else None))
    n = int.from_bytes(dummy[:8], "little")
    return json.loads(dummy[8:8 + n])


def shard_names(n: int, stem: str = "model") -> list[str]:
    """Hugging Face's shard file names."""
    return [f"{stem}-{k:05d}-of-{n:05d}.safetensors" for k in range(1, n + 1)]


def split_shards(tensors: Sequence[OutTensor], max_bytes: int) -> list[list[OutTensor]]:
    """Consecutive groups of at most ``max_bytes`` (a larger tensor gets a shard of its own)."""
    groups: list[list[OutTensor]] = []
    size = 0
    for t in tensors:
        if not groups or (groups[-1] and size + t.nbytes > max_bytes):
            groups.append([])
            size = 0
        groups[-1].append(t)
        size += t.nbytes
    return groups or [[]]


def index_json(weight_map: Mapping[str, str], metadata: Mapping | None, total: int) -> bytes:
    meta = dict(metadata or {})
    meta["total_size"] = total
    return (json.dumps({"metadata": meta, "weight_map": dict(weight_map)}, indent=2) + "\n").encode()
