"""Hot copies: the latest version of each model kept uncompressed, for fast checkout.

The archive stores every tensor entropy-coded (and, after `dlv archive`, as
deltas), which makes a checkout decode-bound: ~200 MB/s in Python. Users
mostly check out the newest version of a model, so its final snapshot is also
kept as a plain safetensors file in ``.dlv/hot/<version id>.safetensors``,
which a checkout maps into memory instead of decoding.

A hot copy is a cache, never the only copy: it is written after the commit's
transaction (or on the first cold checkout of a latest version), it may be
deleted at any time (`dlv gc` drops stale ones, ``DLV_HOT_COPIES=0`` turns it
off), and every read verifies it before use:

* the header names the version and every (tensor name, tensor hash) pair in
  committed order, and must equal what the catalog says;
* each tensor carries an XXH3-128 checksum over its dtype, shape and bytes.
  The tensors' identity stays the BLAKE2b content hash; XXH3 runs at
  ~20 GB/s, so verifying costs about what touching the pages costs.

Anything that does not verify is deleted and the checkout falls back to the
archive, so a damaged or half-written hot copy costs time, never correctness.
The file is a valid safetensors file (contiguous, no holes), readable by any
safetensors loader.
"""
from __future__ import annotations

import json
import mmap
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import xxhash

from ..errors import InputError
from ..sizes import parse_size
from ..storage.dtypes import DTYPE_SIZES
from ..storage.atomic import new_temp

if TYPE_CHECKING:
    import torch

FORMAT = "dlv-hot-1"
SUFFIX = ".safetensors"

#: torch dtype name -> safetensors dtype code (the hot copy is a standard safetensors file)
_ST_CODES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "uint16": "U16", "uint32": "U32", "uint64": "U64",
}
_TORCH_NAMES = {code: name for name, code in _ST_CODES.items()}


def enabled() -> bool:
    return os.environ.get("DLV_HOT_COPIES", "1").strip().lower() not in ("0", "false", "no", "off")


#: ``env_max_bytes()`` when DLV_HOT_MAX_BYTES is not set (the repository setting applies)
UNSET = object()


def env_max_bytes():
    """``DLV_HOT_MAX_BYTES`` (e.g. 20G, 0, none): overrides the repository's ``hotcopy.max_bytes``
    (settings.py) for this process; :data:`UNSET` when not set."""
    text = os.environ.get("DLV_HOT_MAX_BYTES", "").strip()
    if not text:
        return UNSET
    if text.lower() in ("none", "unlimited", "off"):
        return None
    try:
        return parse_size(text)
    except InputError:
        raise InputError(f"DLV_HOT_MAX_BYTES={text!r} is not a size; write bytes or a number with K, M, G or T "
                         "(e.g. 20G), 0 for no hot copies, none for no cap, or unset it") from None


def max_bytes() -> int | None:
    """``DLV_HOT_MAX_BYTES`` as a cap (None when unset or 'none'); raises InputError when malformed."""
    cap = env_max_bytes()
    return None if cap is UNSET else cap


def _checksum(dtype: str, shape: Sequence[int], data) -> str:
    h = xxhash.xxh3_128(json.dumps([dtype, list(shape)]).encode())
    h.update(data)
    return h.hexdigest()


class HotCopies:
    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)

    def path(self, version_id: str) -> Path:
        return self.folder / f"{version_id}{SUFFIX}"

    def files(self) -> list[Path]:
        return sorted(self.folder.glob(f"*{SUFFIX}")) if self.folder.is_dir() else []

    def bytes_used(self) -> int:
        return sum(p.stat().st_size for p in self.files() if p.exists())

    def version_ids(self) -> set[str]:
        return {p.name[: -len(SUFFIX)] for p in self.files()}

    # -- write -----------------------------------------------------------------------
    def write(self, version_id: str, entries: Sequence[tuple[str, str]], tensors: Mapping[str, torch.Tensor]) -> int:
        """Write the hot copy of ``version_id`` (entries: (name, tensor hash) in committed order).

        Returns the bytes written, 0 when the tensors cannot be held (a dtype
        safetensors has no code for). Not fsynced: a torn file fails
        verification and is rebuilt, and the archive stays the durable copy.
        """
        from ..tensorio import dtype_name, tensor_view  # torch: only when there are tensors to write

        items = []
        for name, _ in entries:
            t = tensors[name]
            items.append(RawTensor(dtype_name(t.dtype), tuple(t.shape), t.numel() * t.element_size(),
                                   lambda t=t: tensor_view(t), lambda: None))
        return self.write_raw(version_id, entries, items)

    def write_raw(self, version_id: str, entries: Sequence[tuple[str, str]], items: Sequence["RawTensor"]) -> int:
        """:meth:`write` from raw bytes read one tensor at a time (a streaming commit's mapped
        file): each tensor is read twice (checksum, then copy) and released in between."""
        header: dict = {}
        checks: list[str] = []
        offset = 0
        for (name, _), item in zip(entries, items):
            if item.dtype not in _ST_CODES:
                return 0
            try:
                data = memoryview(item.read())
                header[name] = {"dtype": _ST_CODES[item.dtype], "shape": list(item.shape),
                                "data_offsets": [offset, offset + data.nbytes]}
                checks.append(_checksum(item.dtype, item.shape, data))
                offset += data.nbytes
            finally:
                item.done()
        header["__metadata__"] = {
            "dlv.format": FORMAT, "dlv.version": version_id,
            "dlv.tensors": json.dumps([[n, th, c] for (n, th), c in zip(entries, checks)]),
        }
        head = json.dumps(header, separators=(",", ":")).encode()
        head += b" " * (-len(head) % 8)  # data starts 8-byte aligned
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = new_temp(self.folder, suffix=SUFFIX)   # umask applies, as to every object
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(len(head).to_bytes(8, "little"))
                f.write(head)
                for item in items:
                    try:
                        f.write(item.read())
                    finally:
                        item.done()
            os.replace(tmp, self.path(version_id))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return 8 + len(head) + offset

    # -- read ------------------------------------------------------------------------
    def read(self, version_id: str, entries: Sequence[tuple[str, str]]) -> "OrderedDict[str, torch.Tensor] | None":
        """The verified tensors of a hot copy, or None (absent, stale or damaged: then deleted)."""
        found = self._open_verified(version_id, entries)
        return None if found is None else _as_tensors(*found)

    def read_raw(self, version_id: str, entries: Sequence[tuple[str, str]]) -> "OrderedDict[str, memoryview] | None":
        """:meth:`read`'s tensors as their raw bytes (views of the mapping), by name: what a
        checkout copies, without importing torch (~1.2 s of a command's start)."""
        found = self._open_verified(version_id, entries)
        if found is None:
            return None
        mm, spans = found
        view = memoryview(mm)
        return OrderedDict((name, view[start:end]) for name, _, _, start, end in spans)

    def _open_verified(self, version_id: str, entries: Sequence[tuple[str, str]]):
        """(the mapping, its verified spans) of a hot copy, or None (absent, stale or damaged:
        then deleted); a hot copy read counts as recent for eviction."""
        path = self.path(version_id)
        try:
            mm = _map(path)
        except (OSError, ValueError):
            return None  # absent, or empty (ValueError: cannot map an empty file)
        spans = _verified_spans(mm, version_id, entries)
        if spans is None:
            path.unlink(missing_ok=True)
            return None
        try:
            os.utime(path)  # recency, for the DLV_HOT_MAX_BYTES eviction order
        except OSError:
            pass
        return mm, spans

    def problem(self, version_id: str, entries: Sequence[tuple[str, str]]) -> "HotCopyFault | None":
        """Why the hot copy of ``version_id`` is unusable (None: it verifies); for fsck."""
        try:
            mm = _map(self.path(version_id))
        except (OSError, ValueError) as exc:
            return HotCopyFault(unreadable=True, cause=type(exc).__name__)
        return None if _verified_spans(mm, version_id, entries) is not None else HotCopyFault(unreadable=False)

    # -- eviction --------------------------------------------------------------------
    def retain(self, keep: set[str], among: set[str] | None = None) -> list[Path]:
        """Delete hot copies not in ``keep`` (only those of ``among`` when given); returns them."""
        gone = []
        for vid in self.version_ids():
            if vid not in keep and (among is None or vid in among):
                p = self.path(vid)
                p.unlink(missing_ok=True)
                gone.append(p)
        return gone

    def enforce_cap(self, cap: int | None, keep: str) -> list[Path]:
        """Delete the least recently used hot copies (never ``keep``) until all fit in ``cap`` bytes."""
        if cap is None:
            return []
        aged = []
        for p in self.files():
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            aged.append((st.st_mtime, p.name, p, st.st_size))
        total = sum(a[3] for a in aged)
        gone = []
        for _, _, p, size in sorted(aged):
            if total <= cap:
                break
            if p == self.path(keep):
                continue
            p.unlink(missing_ok=True)
            gone.append(p)
            total -= size
        if total > cap:  # the kept copy alone exceeds the cap: it goes too
            self.path(keep).unlink(missing_ok=True)
            gone.append(self.path(keep))
        return gone

    def stale_temp_files(self, older_than: float) -> list[Path]:
        if not self.folder.is_dir():
            return []
        out = []
        for p in self.folder.glob(".tmp-*"):
            try:
                if p.stat().st_mtime < older_than:
                    out.append(p)
            except FileNotFoundError:
                pass
        return out


@dataclass(frozen=True)
class RawTensor:
    """A tensor as the hot copy writer reads it: ``read()`` its bytes, ``done()`` when finished with them."""
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    read: Callable[[], "memoryview | bytes"]
    done: Callable[[], None]


@dataclass(frozen=True)
class HotCopyFault:
    """Why a hot copy cannot be used: it cannot be mapped at all (``cause``: the error's type),
    or it maps but does not match its version's tensors and checksums."""
    unreadable: bool
    cause: str = ""

    def __str__(self) -> str:
        return f"unreadable ({self.cause})" if self.unreadable else "does not verify"


def _map(path: Path) -> mmap.mmap:
    # a private (copy-on-write) mapping: callers may modify the tensors in
    # place without touching the file
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)


def _verified_spans(mm: mmap.mmap, version_id: str,
                    entries: Sequence[tuple[str, str]]) -> "list[tuple[str, str, list[int], int, int]] | None":
    """(name, dtype, shape, start, end) of every tensor of a hot copy whose header names
    ``version_id`` and ``entries`` and whose checksums match; None otherwise. Needs no torch."""
    try:
        n = int.from_bytes(mm[:8], "little")
        if not 0 < n <= len(mm) - 8:
            return None
        header = json.loads(mm[8 : 8 + n])
        meta = header.pop("__metadata__")
        if meta.get("dlv.format") != FORMAT or meta.get("dlv.version") != version_id:
            return None
        listed = json.loads(meta["dlv.tensors"])
        if [(a, b) for a, b, _ in listed] != [tuple(e) for e in entries] or len(header) != len(listed):
            return None
        base = 8 + n
        view = memoryview(mm)
        spans = []
        for name, _, _ in listed:
            info = header[name]
            dtype, shape = _TORCH_NAMES[info["dtype"]], [int(d) for d in info["shape"]]
            start, end = (base + int(o) for o in info["data_offsets"])
            numel = 1
            for d in shape:
                numel *= d
            if not base <= start <= end <= len(mm) or end - start != numel * DTYPE_SIZES[dtype]:
                return None
            spans.append((name, dtype, shape, start, end))
        # hashing is what faults the pages in (~15 GB/s); threads measured no faster
        sums = [_checksum(dtype, shape, view[a:b]) for _, dtype, shape, a, b in spans]
        if sums != [c for _, _, c in listed]:
            return None
        return spans
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, json.JSONDecodeError):
        return None


def _as_tensors(mm: mmap.mmap, spans) -> "OrderedDict[str, torch.Tensor]":
    """Torch tensors over the mapping, one per verified span."""
    import torch  # here, not at the top: opening a repository must not import torch

    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for name, dtype, shape, start, end in spans:
        torch_dtype = getattr(torch, dtype)
        if end == start:
            out[name] = torch.empty(shape, dtype=torch_dtype)
        else:
            count = (end - start) // DTYPE_SIZES[dtype]
            out[name] = torch.frombuffer(mm, dtype=torch_dtype, count=count, offset=start).reshape(shape)
    return out
