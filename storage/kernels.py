"""The compiled per-element loops (storage/_kernels.c for the segmented codec, storage/_context_kernels.c
for the context coder's decoder, storage/_rans_kernels.c for its rANS streams), when the install built them.

``pip install`` compiles the three files into one library where a C compiler is present (setup.py: an
optional extension). It is plain C loaded with ctypes, which releases the GIL around each call, so the
tensors of a commit or a checkout are split, packed, unpacked and joined in parallel threads.
Each function returns exactly what the numpy code it replaces returns (bitfields.py,
planepack.py, bits7.py, byteclass.py, deltas.py, context_coding.py and rans.py keep that code as the
reference and the fallback; tests/test_kernels.py and tests/test_rans.py compare them bit for bit,
damaged input included), so a repository reads the same with or without the kernels. (The one
difference in what is written: without the kernels the context coder does not try rANS streams.)

``LIB`` is None without the compiled file, or with ``DLV_KERNELS=off`` in the environment
(to compare, or to rule the kernels out).

Measured when they were added (2026-11-30) with ``benchmarks/streaming.py --repeats 3 --large-gb 1.2``
on 2 cores, kernels on against ``DLV_KERNELS=off``, two interleaved rounds: a 1.16 GB sharded bfloat16 checkpoint committed through
the API at 692-763 MB/s against 368-596 (2.15-2.52 against 2.76-4.38 CPU-s/GB), cold checkout
377-486 against 295-455 MB/s; all-MiniLM-L6-v2 (float32) committed at 245-255 against 158-210 MB/s,
checked out at 413-469 against 247-353 MB/s. One thread alone gains less than that: split and join
run near this machine's memory bandwidth in blocked numpy too. Most of the gain is the GIL, which
numpy takes back between its many short operations per block.

The decoders of archived deltas gain more, on one thread: numpy placed the context coder's elements
with two stable sorts and fancy indexing, and joined byte classes with a boolean mask per byte; the
kernels do each in one pass with cursors. benchmarks/archive_context.py, one thread, two sittings
(EfficientNet-Lite0 fine-tune / CNN from scratch / MiniLM bfloat16 fine-tune): context-coded deltas
279 / 267 / 216 and 360 / 370 / 354 MB/s against 83 / 75 / 58 and 88 / 90 / 71; segmented deltas
351 / 289 / 266 and 367 / 332 / 312 against 101 / 83 / 90 and 92 / 100 / 96.

Hot loops are built three times (x86-64, -v3, -v4: GCC's target_clones) and the loader picks the
best the processor runs; split and join of bfloat16 ran 1.35-1.5x faster on this machine's AVX-512.
"""
from __future__ import annotations

import ctypes
import importlib.machinery
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def _load() -> Optional[ctypes.CDLL]:
    if os.environ.get("DLV_KERNELS", "").lower() in ("off", "0", "no", "false"):
        return None
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = here / f"_kernels{suffix}"
        if path.is_file():
            try:
                lib = ctypes.CDLL(str(path))
            except OSError:
                return None   # built for another platform or damaged: the numpy code still works
            _declare(lib)
            return lib
    return None


def _declare(lib: ctypes.CDLL) -> None:
    p, size, i = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
    lib.mh_split_fields.argtypes = [p, size, i, i, p, p, p]
    lib.mh_join_fields.argtypes = [p, size, i, i, p, p, p]
    lib.mh_join_sources.argtypes = [p, size, i, i, p, p, p]
    lib.mh_pack_plane.argtypes = [p, size, i, ctypes.c_uint8, p, p]
    lib.mh_pack_plane.restype = size
    lib.mh_unpack_plane.argtypes = [p, size, i, ctypes.c_uint8, p, size, p]
    lib.mh_unpack_plane.restype = size
    lib.mh_bits7_encode.argtypes = [p, size, p]
    lib.mh_bits7_decode.argtypes = [p, size, p]
    lib.mh_ctx_exp_hist.argtypes = [p, size, i, i, ctypes.c_uint, p, p]
    lib.mh_ctx_counts.argtypes = [p, p, ctypes.c_int64, i, p, p]
    lib.mh_ctx_words.argtypes = [p, size, i, i, ctypes.c_uint, p, ctypes.c_int64, p, p, p, p, p, p, i, p, p]
    lib.mh_ctx_parent_groups.argtypes = [p, size, i, i, ctypes.c_uint, ctypes.c_int64, p, p, p]
    lib.mh_ctx_parent_groups.restype = ctypes.c_int64
    lib.mh_ctx_count_plan.argtypes = [p, p, ctypes.c_int64, i, ctypes.c_int64, p, p, p, p, p, p]
    lib.mh_ctx_words_scratch.argtypes = [i, ctypes.c_int64]
    lib.mh_ctx_words_scratch.restype = ctypes.c_int64
    lib.mh_undo_delta.argtypes = [p, size, i, i, p]
    lib.mh_ctx_delta_counts.argtypes = [p, p, size, i, i, ctypes.c_uint, p, ctypes.c_int64, i, p, p, p]
    lib.mh_ctx_scatter.argtypes = [p, p, size, i, i, ctypes.c_uint, p, ctypes.c_int64, p, p, p, p, p, p]
    lib.mh_byte_histogram.argtypes = [p, size, p]
    lib.mh_byte_histogram.restype = None
    lib.mh_byteclass_join.argtypes = [p, size, i, p, p]
    lib.mh_byteclass_split.argtypes = [p, p, size, i, p]
    lib.mh_rans_encode.argtypes = [p, size, p, i, p, size]
    lib.mh_rans_encode.restype = ctypes.c_int64
    lib.mh_rans_decode.argtypes = [p, size, p, size]
    lib.mh_rans_decode_many.argtypes = [p, p, p, ctypes.c_int64]
    lib.mh_rans_decode_many.restype = ctypes.c_int64
    lib.mh_ctx_groups.argtypes = [p, ctypes.c_int64, ctypes.c_int64, p, p]
    lib.mh_ctx_groups.restype = ctypes.c_int64
    lib.mh_ctx_stream_table.argtypes = [p, ctypes.c_int64, ctypes.c_int64, p]
    lib.mh_ctx_stream_table.restype = ctypes.c_int64
    for name in ("mh_undo_delta", "mh_byteclass_join", "mh_byteclass_split", "mh_split_fields", "mh_join_fields", "mh_join_sources", "mh_bits7_encode", "mh_bits7_decode",
                 "mh_ctx_exp_hist", "mh_ctx_counts", "mh_ctx_count_plan", "mh_ctx_words", "mh_ctx_delta_counts", "mh_ctx_scatter",
                 "mh_rans_decode"):
        getattr(lib, name).restype = i


LIB = _load()


def aligned(words: np.ndarray) -> bool:
    """Whether the kernels can take these words: contiguous and aligned to their size (a tensor
    mapped from a safetensors file need not be; numpy handles that case)."""
    return words.flags.c_contiguous and words.ctypes.data % words.itemsize == 0


def _address(buffer) -> int:
    """The address of a contiguous buffer (bytes, bytearray, memoryview or array), read-only ones too."""
    return np.frombuffer(buffer, dtype=np.uint8).ctypes.data if not isinstance(buffer, np.ndarray) else buffer.ctypes.data


def _new_bytes(nbytes: int) -> np.ndarray:
    return np.empty(nbytes, dtype=np.uint8)


def _layout_arrays(layout: Sequence[tuple[int, int]]):
    k = len(layout)
    return (ctypes.c_int * k)(*(s for s, _ in layout)), (ctypes.c_int * k)(*(w for _, w in layout))


def split_fields(words: np.ndarray, layout: Sequence[tuple[int, int]], empty=None) -> list[np.ndarray]:
    """The fields as bitfields.split_fields returns them, in arrays from ``empty(nbytes)`` (default: new ones)."""
    n = words.size
    empty = empty or _new_bytes
    outs = [empty((n + 7) // 8 if w == 1 else n) for _, w in layout]
    shifts, widths = _layout_arrays(layout)
    pointers = (ctypes.c_void_p * len(outs))(*(o.ctypes.data for o in outs))
    if LIB.mh_split_fields(words.ctypes.data, n, words.itemsize, len(layout), shifts, widths, pointers):
        raise ValueError(f"split_fields: {len(layout)} fields are more than the kernel takes")
    return outs


def join_fields(segments: Sequence, layout: Sequence[tuple[int, int]], n: int, words: np.ndarray) -> None:
    """Fill ``words`` (n contiguous words) from the segments (lengths already checked)."""
    keep = [np.frombuffer(s, dtype=np.uint8) for s in segments]   # alive for the call
    shifts, widths = _layout_arrays(layout)
    pointers = (ctypes.c_void_p * len(keep))(*(k.ctypes.data for k in keep))
    if LIB.mh_join_fields(pointers, n, words.itemsize, len(layout), shifts, widths, words.ctypes.data):
        raise ValueError(f"join_fields: {len(layout)} fields are more than the kernel takes")


class _Source(ctypes.Structure):
    """mh_source in _kernels.c."""
    _fields_ = [("data", ctypes.c_void_p), ("escapes", ctypes.c_void_p), ("n_escapes", ctypes.c_size_t),
                ("found", ctypes.c_size_t), ("kind", ctypes.c_int), ("bits", ctypes.c_int), ("lo", ctypes.c_int)]


#: mh_source kinds: a field as split_fields writes it, a packed plane's codes, a bits7 blob
SOURCE_FIELD, SOURCE_PACKED, SOURCE_BITS7 = 0, 1, 2


@dataclass(frozen=True)
class FieldSource:
    """One field of a join, in its stored coding: ``kind`` SOURCE_FIELD (``data`` is the field),
    SOURCE_PACKED (``data`` the codes of ``bits`` bits, window from ``lo``, ``escapes`` their bytes)
    or SOURCE_BITS7 (``data`` the blob). Lengths are the caller's to check."""
    kind: int
    data: object
    bits: int = 0
    lo: int = 0
    escapes: object = b""


def join_sources(sources: Sequence[FieldSource], layout: Sequence[tuple[int, int]], n: int,
                 words: np.ndarray) -> Optional[list[int]]:
    """Fill ``words`` from the fields in their stored codings, unpacking a block at a time (no
    plane is unpacked whole). Returns, per field, the escape codes met (SOURCE_PACKED: the words
    are right only where that equals ``len(escapes)``) or 0; None when a bits7 field has a stray
    top bit."""
    keep = [(np.frombuffer(src.data, dtype=np.uint8), np.frombuffer(src.escapes, dtype=np.uint8)
             if len(src.escapes) else _ONE_ZERO) for src in sources]   # alive for the call
    array = (_Source * len(sources))(*(
        _Source(d.ctypes.data, e.ctypes.data, len(src.escapes), 0, src.kind, src.bits, src.lo)
        for src, (d, e) in zip(sources, keep)))
    shifts, widths = _layout_arrays(layout)
    status = LIB.mh_join_sources(array, n, words.itemsize, len(layout), shifts, widths, words.ctypes.data)
    if status == -2:
        return None
    if status:
        raise ValueError(f"join_sources: {len(layout)} fields or their codings are more than the kernel takes")
    return [int(src.found) for src in array]


def pack_plane(plane: np.ndarray, bits: int, lo: int, empty=None) -> tuple[np.ndarray, bytes]:
    """(the codes, in an array from ``empty(nbytes)``, default a new one; the escapes)."""
    n = plane.size
    packed = (empty or _new_bytes)((n * bits + 7) // 8)
    escapes = np.empty(n, dtype=np.uint8)
    count = LIB.mh_pack_plane(plane.ctypes.data, n, bits, lo, packed.ctypes.data, escapes.ctypes.data)
    return packed, escapes[:count].tobytes()


def unpack_plane(packed: np.ndarray, n: int, bits: int, lo: int, escapes) -> tuple[np.ndarray, int]:
    """(the plane, how many escape codes its first ``n`` codes hold); the plane is right only when
    that count is ``len(escapes)``. ``packed`` holds ceil(n * bits / 8) bytes (checked by the caller)."""
    out = np.empty(n, dtype=np.uint8)
    found = LIB.mh_unpack_plane(packed.ctypes.data, n, bits, lo, _address(escapes) if len(escapes) else None,
                                len(escapes), out.ctypes.data)
    return out, found


def bits7_encode(values: np.ndarray, in_place: bool = False) -> Optional[memoryview]:
    """The bits7 blob, or None (``values`` unchanged) when a value is 128 or more; with
    ``in_place`` it is written over the first ``n - n // 8`` of ``values`` (which it then views)."""
    n = values.size
    out = values[:n - n // 8] if in_place else np.empty(n - n // 8, dtype=np.uint8)
    ok = LIB.mh_bits7_encode(values.ctypes.data, n, out.ctypes.data)
    return memoryview(out) if ok == 0 else None


def bits7_decode(blob: bytes, n: int) -> Optional[np.ndarray]:
    """The field, or None when a top bit past the tail's planes is set (length already checked)."""
    out = np.empty(n, dtype=np.uint8)
    ok = LIB.mh_bits7_decode(_address(blob) if blob else None, n, out.ctypes.data)
    return out if ok == 0 else None


def byte_histogram(data) -> np.ndarray:
    """How many of each byte value ``data`` holds (256 int64): one pass in C, else numpy's bincount
    (which widens every byte to int64 first: ~4 ns per byte, the slowest step of a delta decode)."""
    values = np.frombuffer(data, dtype=np.uint8)
    if LIB is None:
        return np.bincount(values, minlength=256)
    hist = np.empty(256, dtype=np.int64)
    if values.size:
        LIB.mh_byte_histogram(values.ctypes.data, values.size, hist.ctypes.data)
    else:
        hist[:] = 0
    return hist


# -- deltas -----------------------------------------------------------------------------------

_DELTA_OPS = {"xor": 0, "osub": 1, "sub": 2}   # as mh_undo_delta and mh_ctx_words number them
_ONE_ZERO = np.zeros(1, dtype=np.uint8)        # where an empty segment's cursor points (never read)


def _check(status: int, what: str) -> None:
    """The kernels return 0, or a negative code for arguments the callers never pass (a bug, not damage)."""
    if status != 0:
        raise ValueError(f"{what}: the kernel refused its arguments (status {status})")


def undo_delta(op: str, words: np.ndarray, base_words: np.ndarray) -> None:
    """deltas.undo_delta in place: ``words`` (the deltas) become the tensor's words. Both aligned, same size."""
    _check(LIB.mh_undo_delta(base_words.ctypes.data, words.size, words.itemsize, _DELTA_OPS[op], words.ctypes.data),
           "undo_delta")


def byteclass_join(counts: np.ndarray, segments: Sequence, size: int, out: np.ndarray) -> None:
    """byteclass.join_byteclass into ``out`` (n words of ``size`` bytes); counts and lengths already checked."""
    keep = [np.frombuffer(s, dtype=np.uint8) if len(s) else _ONE_ZERO for s in segments]   # alive for the call
    pointers = (ctypes.c_void_p * len(keep))(*(k.ctypes.data for k in keep))
    _check(LIB.mh_byteclass_join(counts.ctypes.data if counts.size else _ONE_ZERO.ctypes.data, counts.size, size,
                                 pointers, out.ctypes.data), "byteclass_join")


def byteclass_split(words: np.ndarray, counts: np.ndarray, lengths: Sequence[int]) -> list[np.ndarray]:
    """byteclass.split_byteclass's segments after the counts (``lengths``: each one's, as
    byteclass.expected_lengths gives them) from contiguous ``words``."""
    segments = [np.empty(n + 1, dtype=np.uint8) for n in lengths]   # + 1: the kernel's branch-free store
    pointers = (ctypes.c_void_p * len(segments))(*(seg.ctypes.data for seg in segments))
    _check(LIB.mh_byteclass_split(words.ctypes.data, counts.ctypes.data, counts.size, words.itemsize, pointers),
           "byteclass_split")
    return [seg[:n] for seg, n in zip(segments, lengths)]


# -- the context coder's decoder (storage/_context_kernels.c) ----------------------------------

def exponent_histogram(base_words: np.ndarray, man_bits: int, exp_bits: int) -> np.ndarray:
    """How many parent elements have each exponent value (``base_words`` aligned)."""
    hist = np.empty(1 << exp_bits, dtype=np.int64)
    scratch = np.empty(4 << exp_bits, dtype=np.int64)
    _check(LIB.mh_ctx_exp_hist(base_words.ctypes.data, base_words.size, base_words.itemsize, man_bits,
                               (1 << exp_bits) - 1, hist.ctypes.data, scratch.ctypes.data), "exponent_histogram")
    return hist


def context_groups(hist: np.ndarray, min_group: int) -> tuple[np.ndarray, np.ndarray]:
    """(bin -> group label, elements per group): what context_coding.merge_bins and its group sizes give.
    The compiled merge (mh_ctx_groups) that parent_groups and count_plan run inside their kernels; this
    entry point lets tests compare it with merge_bins."""
    h = np.ascontiguousarray(hist, dtype=np.int64)
    labels = np.empty(h.size, dtype=np.int64)
    sizes = np.empty(max(h.size, 1), dtype=np.int64)
    ngroups = LIB.mh_ctx_groups(h.ctypes.data, h.size, min_group, labels.ctypes.data, sizes.ctypes.data)
    if ngroups < 0:
        raise ValueError(f"context_groups: the kernel refused min_group {min_group}")
    return labels, sizes[:ngroups]


def _run_cursors(group_sizes: np.ndarray, hist: np.ndarray, labels: np.ndarray):
    """(where each group's run starts in the counts, where each (count, group) run starts in count c's
    streams, the labels as the kernels take them): the cursors the encoder's scatter advances (the
    decoder's gather makes its own, in mh_ctx_words)."""
    count_pos = np.ascontiguousarray(np.cumsum(group_sizes) - group_sizes, dtype=np.int64)
    lead_pos = np.ascontiguousarray(np.cumsum(hist, axis=1) - hist, dtype=np.int64)   # [c, g], exclusive
    return count_pos, lead_pos, np.ascontiguousarray(labels, dtype=np.uint16)


def parent_groups(base_words: np.ndarray, man_bits: int, exp_bits: int, min_group: int) -> tuple[np.ndarray, np.ndarray]:
    """(exponent value -> context group as uint16, elements per group): the parent's exponent histogram
    merged as context_coding.merge_bins merges it, in one call (``min_group`` >= 1, checked by the caller)."""
    bins = 1 << exp_bits
    labels = np.empty(bins, dtype=np.uint16)
    sizes = np.empty(bins, dtype=np.int64)
    scratch = np.empty(6 * bins, dtype=np.int64)
    ngroups = LIB.mh_ctx_parent_groups(base_words.ctypes.data, base_words.size, base_words.itemsize, man_bits,
                                       bins - 1, min_group, labels.ctypes.data, sizes.ctypes.data, scratch.ctypes.data)
    if ngroups < 0:
        raise ValueError(f"parent_groups: the kernel refused its arguments (status {ngroups})")
    return labels, sizes[:ngroups]


@dataclass(frozen=True)
class CountPlan:
    """What the counts streams tell the decoder (mh_ctx_count_plan): the rest of the blob's layout."""

    counts: np.ndarray          # every element's byte count, in group order
    hist: np.ndarray            # hist[c, g]: elements of context group g with c significant bytes
    per_count: np.ndarray       # elements with c significant bytes
    lead_sizes: np.ndarray      # the lead groups of count 1, then of count 2, ...: their streams, in blob order


def count_plan(packed, group_sizes: np.ndarray, itemsize: int, min_group: int) -> Optional[CountPlan]:
    """The counts unpacked and the lead streams' sizes, or None when a code is out of range.
    ``packed`` holds every group's packed counts, concatenated (lengths already checked)."""
    ngroups = len(group_sizes)
    n = int(group_sizes.sum())
    counts = np.empty(n + 8, dtype=np.uint8)   # the kernel writes each code's digits as one 8-byte row
    hist = np.empty((itemsize + 1, ngroups), dtype=np.int64)
    per_count = np.empty(itemsize + 1, dtype=np.int64)
    lead_sizes = np.empty(itemsize * ngroups, dtype=np.int64)
    n_lead = np.empty(itemsize + 1, dtype=np.int64)
    scratch = np.empty(max(ngroups, 1), dtype=np.int64)
    status = LIB.mh_ctx_count_plan(_address(packed) if len(packed) else None, group_sizes.ctypes.data, ngroups,
                                   itemsize, min_group, counts.ctypes.data, hist.ctypes.data, per_count.ctypes.data,
                                   lead_sizes.ctypes.data, n_lead.ctypes.data, scratch.ctypes.data)
    if status == -1:
        return None
    _check(status, "count_plan")
    return CountPlan(counts[:n], hist, per_count, lead_sizes[:int(n_lead[1:].sum())])


def context_words(base_words: np.ndarray, man_bits: int, exp_bits: int, labels: np.ndarray, plan: CountPlan,
                  group_sizes: np.ndarray, leads: Sequence, lows: Sequence, op: str, out: np.ndarray) -> None:
    """Every element's word into ``out`` (see _context_kernels.c). ``labels`` and ``group_sizes`` as
    :func:`parent_groups` gives them; ``leads[c]`` and ``lows[c]`` hold count c's lead and low bytes
    (``leads[0]``, ``lows[0]`` and ``lows[1]`` empty), lengths already checked against the plan; they are
    read where they lie."""
    s = base_words.itemsize
    ngroups = len(group_sizes)
    keep = [np.frombuffer(b, dtype=np.uint8) if len(b) else None for b in (*leads, *lows)]   # alive for the call
    lead_ptrs = (ctypes.c_void_p * (s + 1))(*(k.ctypes.data if k is not None else None for k in keep[:s + 1]))
    low_ptrs = (ctypes.c_void_p * (s + 1))(*(k.ctypes.data if k is not None else None for k in keep[s + 1:]))
    low_lengths = (ctypes.c_int64 * (s + 1))(*(len(b) for b in lows))
    cursors = np.empty(max(LIB.mh_ctx_words_scratch(s, ngroups), 1), dtype=np.int64)   # cursors and runs
    _check(LIB.mh_ctx_words(base_words.ctypes.data, base_words.size, s, man_bits, (1 << exp_bits) - 1,
                            labels.ctypes.data, ngroups, plan.counts.ctypes.data, group_sizes.ctypes.data,
                            plan.hist.ctypes.data, lead_ptrs, low_ptrs, low_lengths, _DELTA_OPS[op],
                            cursors.ctypes.data, out.ctypes.data), "context_words")


def context_delta_counts(words: np.ndarray, base_words: np.ndarray, man_bits: int, exp_bits: int,
                         labels: np.ndarray, ngroups: int, op: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(delta words, each one's number of significant bytes, hist[c, g]: elements of context group g
    with c significant bytes) of ``words`` against ``base_words`` (both aligned, same size)."""
    s, n = words.itemsize, words.size
    z = np.empty(n, dtype=words.dtype)
    counts = np.empty(n, dtype=np.uint8)
    hist = np.empty((s + 1, max(ngroups, 1)), dtype=np.int64)
    label16 = np.ascontiguousarray(labels, dtype=np.uint16)
    _check(LIB.mh_ctx_delta_counts(words.ctypes.data, base_words.ctypes.data, n, s, man_bits, (1 << exp_bits) - 1,
                                   label16.ctypes.data, max(ngroups, 1), _DELTA_OPS[op], z.ctypes.data,
                                   counts.ctypes.data, hist.ctypes.data), "context_delta_counts")
    return z, counts, hist


def context_scatter(z: np.ndarray, base_words: np.ndarray, man_bits: int, exp_bits: int, labels: np.ndarray,
                    counts: np.ndarray, group_sizes: np.ndarray, hist: np.ndarray
                    ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """(the counts in context-group order, count c's lead bytes and its low bytes for every c) in the
    streams' (count, group, position) order, from what :func:`context_delta_counts` gave."""
    s = z.itemsize
    per_count = hist.sum(axis=1)
    leads = [np.empty(0, np.uint8)] + [np.empty(int(per_count[c]), np.uint8) for c in range(1, s + 1)]
    lows = [np.empty(0, np.uint8)] * 2 + [np.empty(int(per_count[c]) * (c - 1), np.uint8) for c in range(2, s + 1)]
    lead_ptrs = (ctypes.c_void_p * (s + 1))(*(b.ctypes.data if b.size else None for b in leads))
    low_ptrs = (ctypes.c_void_p * (s + 1))(*(b.ctypes.data if b.size else None for b in lows))
    counts_out = np.empty(z.size, dtype=np.uint8)
    count_pos, lead_pos, label16 = _run_cursors(group_sizes, hist, labels)
    _check(LIB.mh_ctx_scatter(z.ctypes.data, base_words.ctypes.data, z.size, s, man_bits, (1 << exp_bits) - 1,
                              label16.ctypes.data, hist.shape[1], counts.ctypes.data, count_pos.ctypes.data,
                              counts_out.ctypes.data, lead_ptrs, lead_pos.ctypes.data, low_ptrs), "context_scatter")
    return counts_out, leads, lows


# -- rANS (storage/_rans_kernels.c; the format and the reference are in storage/rans.py) ---------

def rans_encode(symbols, freq: np.ndarray, scale: int) -> memoryview:
    """The payload (four u32 states, then u16 words) of ``symbols`` under ``freq`` (256 uint32 summing
    to 2^scale, non-zero for every symbol present)."""
    n = len(symbols)
    out = np.empty(2 * n + 16, dtype=np.uint8)
    table = np.ascontiguousarray(freq, dtype=np.uint32)
    length = LIB.mh_rans_encode(_address(symbols) if n else None, n, table.ctypes.data, scale, out.ctypes.data, out.size)
    if length < 0:
        raise ValueError(f"rans_encode: the kernel refused its arguments (status {length})")
    return memoryview(out)[out.size - length:]


def rans_decode(stream, out: np.ndarray) -> bool:
    """Decode a whole stream (header, table, payload) into ``out`` (``out.size`` symbols); False when damaged."""
    return LIB.mh_rans_decode(_address(stream) if len(stream) else None, len(stream), out.ctypes.data, out.size) == 0


def stream_table(blob) -> tuple[list[int], list[int], list[int]] | int:
    """A DCX2 blob's stream table (mh_ctx_stream_table): (offsets in the blob, stored lengths, codings),
    or the kernel's negative status where the table is damaged (context_coding says which damage). The
    kernel refuses more than 65,536 streams, so the second table is at most 1.5 MB."""
    address = _address(blob)
    table = np.empty(3 * 64, dtype=np.int64)
    count = LIB.mh_ctx_stream_table(address, len(blob), 64, table.ctypes.data)
    if count > 64:
        table = np.empty(3 * count, dtype=np.int64)
        count = LIB.mh_ctx_stream_table(address, len(blob), count, table.ctypes.data)
    if count < 0:
        return count
    rows = table[:3 * count]
    return rows[0::3].tolist(), rows[1::3].tolist(), rows[2::3].tolist()


def rans_decode_many(blob, streams: Sequence[tuple[int, int, int, int]], out: np.ndarray) -> int:
    """Decode whole rANS streams of ``blob`` into ``out``: each stream given as (where it starts in the
    blob, its stored length, where its symbols go in ``out``, how many). One call for all of them: -1
    when all decoded, else the index of the first damaged stream. (Addresses as offsets from two bases:
    numpy's ``.ctypes`` per stream cost more than decoding a short one.)"""
    count = len(streams)
    base = _address(blob)
    table = np.array(streams, dtype=np.int64).reshape(count, 4)
    return LIB.mh_rans_decode_many(base, table.ctypes.data, out.ctypes.data, count)
