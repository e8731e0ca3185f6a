"""Context-modeled delta coding (codec ``context``, manifest formats 3 and 4): a float tensor against its parent.

Measured on real training trajectories (benchmarks/archive_context.py): after a lossless delta
(``osub``, the difference in ULPs, or ``xor``), how many significant bytes a delta word has, and
the value of its leading byte, depend on the magnitude of the parent's value: an update of a
given size is many ULPs of a small weight and few of a large one. An order-0 coder (zstd per
segment, ZipNN) sees one mixed distribution; this coder splits every structured stream by a
context the decoder already knows -- the *parent's exponent field* -- and codes each context
group as its own stream, so each group pays only for its own, narrower distribution. Each stream is
stored raw, as a zstd frame or as a static rANS stream (storage/rans.py), whichever is smallest:
zstd wins where a stream repeats, rANS where it is short or skewed (no frame, a compact table,
fractions of a bit per symbol).

Input framing (per element; ``s`` = itemsize, 2, 4 or 8 bytes):

1. ``z = delta(op, x, parent)`` on the little-endian bit patterns (``storage.deltas``);
2. ``c`` = the number of significant bytes of ``z`` (0..s, ``storage.byteclass.byte_counts``);
   its top significant byte is the *lead* byte, the ``c - 1`` bytes below it are noise;
3. context of every element: the parent's exponent field (bfloat16: bits 7..14, float16:
   10..14, float32: 23..30, float64: 52..62) -- for bfloat16 and float16 the real
   exponent/mantissa split, not a byte split;
4. context values, in increasing order, are merged into *groups* of at least ``min_group``
   elements (a small group would pay more for its code table than it saves);
5. streams, in blob order: ``counts`` per group (each group's ``c`` in element order, packed
   ``k`` to a byte as base-(s+1) digits, first element lowest: k = 5 for 2-byte floats, 3 for
   float32, 2 for float64; the last byte of a group is padded with zeros); then for
   c = 1..s the lead bytes of the elements with that count, per *lead group* (context groups
   merged again until each holds ``min_group`` of those elements); then for c = 2..s the
   ``c - 1`` low bytes of those elements (element-major, low byte first: noise).

Nothing about the grouping is stored: the decoder recomputes it from the parent and the decoded
counts. Decoding is one zstd call per zstd stream and one rANS kernel call per list of streams,
plus, where the compiled kernels are built (storage/_context_kernels.c via storage/kernels.py),
three kernel calls per tensor: the context groups from the parent, the counts and the lead
streams' sizes from the counts streams, then every element's word in position order with a cursor
per context group into the counts and one per (count, group) into the lead and low bytes;
elsewhere (no compiler, ``DLV_KERNELS=off``, a parent not aligned to its word size) the numpy
reference: two stable counting sorts give every element's place in (count, group, position)
order, where each stream is one contiguous run. Both release the GIL: tensors decode in parallel
on threads. Measured on the three trajectories of benchmarks/archive_context.py, one thread:
216-370 MB/s compiled against 58-90 MB/s in numpy (two sittings, 2026-12-01), and 1.42-1.49x that
since the kernels' rework of 2026-12-02 (docs/CONTEXT_CODER.md).

Blob (one per tensor), format 4 (written since 2026-12)::

    b"DCX2" | varint stream count | per stream: varint(stored length << 2 | coding)
            | the streams, concatenated
    coding: 0 raw, 1 zstd frame without its magic number, 2 rANS (storage/rans.py)

Format 3 (read, no longer written)::

    b"DCX1" | u32 stream count | per stream: u32 stored length, u8 coding (0 raw, 1 zstd frame)
            | the streams, concatenated          (integers little-endian)

Measured on the EfficientNet-Lite0 fine-tune trajectory (benchmarks/archive_context.py, its 84
context-coded tensors, 40.07 MB in format 3): the varint table and the magic-less frames save 12.4 KB
(5.6 bytes per stream), the rANS streams 137 KB more; the whole trajectory goes from 1.0995x to
1.1027x ZipNN-delta. On the bf16 fine-tune the rANS streams save 5.1% of the context-coded bytes.

Manifest (JSON, in the catalog)::

    {"format": 4, "codec": "context", "dtype": "bfloat16", "context": "parent-exponent",
     "min_group": 1024, "delta": {"base": "<tensor_hash>", "op": "osub" | "xor"},
     "segments": ["<content hash of the blob>"], "sizes": [len(blob)]}

The coder encodes deltas of float16/bfloat16/float32/float64 tensors of at least
``min_elements`` elements; :func:`encode_context` returns None otherwise. It does not decide
whether to be used: the caller keeps it for a tensor only when it is smaller than the segmented
encoding.
"""
from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import zstandard

from . import kernels, rans
from .bitfields import FLOAT_FORMATS, UINT_OF_SIZE
from .buffers import unset_bytearray
from .byteclass import byte_counts
from .deltas import apply_delta, undo_delta
from .codecs import register_codec
from .errors import CodecError, CorruptBlobError, DamagedEncodingError, UnknownFormatError
from .segmented import entropy_of_histogram

FORMAT = 4                  # written: the DCX2 container (below)
FORMATS = (3, 4)            # read: format 3 is the DCX1 container, written until 2026-12
CODEC_ID = "context"
CONTEXT_PARENT_EXPONENT = "parent-exponent"
OPS = ("osub", "xor")
MAGIC_V1, MAGIC = b"DCX1", b"DCX2"
CODING_RAW, CODING_ZSTD, CODING_RANS = 0, 1, 2
CODINGS = {MAGIC_V1: (CODING_RAW, CODING_ZSTD), MAGIC: (CODING_RAW, CODING_ZSTD, CODING_RANS)}
_HEADER_V1 = struct.Struct("<4sI")
_ENTRY_V1 = struct.Struct("<IB")

#: bytes per element of the dtypes this coder takes (float8 leaves no room for a context)
ITEMSIZES: Mapping[str, int] = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}

#: counts packed per byte: a counts symbol has s + 1 values; packing k of them per byte gives
#: zstd's Huffman coder a richer alphabet (one symbol costs at least one bit there) and lets it
#: see neighbours together. Measured on the fine-tune trajectory: -22% on the counts streams.
COUNTS_PER_BYTE: Mapping[int, int] = {2: 5, 4: 3, 8: 2}

#: a stream above this many bits per byte is noise: stored raw without a zstd attempt
_NOISE_BITS_PER_BYTE = 7.95


@dataclass(frozen=True)
class ContextConfig:
    """How the context coder encodes (decoding needs only the manifest)."""

    min_group: int = 1024          # fewest elements per context group of a stream
    min_elements: int = 4096       # smaller tensors: per-group tables cost more than they save
    # delta ops tried, the smallest result kept: on the three benchmark trajectories osub won
    # every tensor, so xor (twice the encode time) is opt-in
    ops: tuple[str, ...] = ("osub",)

    def __post_init__(self) -> None:
        if self.min_group < 1:
            raise CodecError(f"min_group must be at least 1, not {self.min_group}")
        if self.min_elements < 1:
            raise CodecError(f"min_elements must be at least 1, not {self.min_elements}")
        if not self.ops or any(op not in OPS for op in self.ops):
            raise CodecError(f"unknown delta ops {list(self.ops)}; use some of {list(OPS)}")

    def to_json(self) -> dict:
        return {"min_group": self.min_group, "min_elements": self.min_elements, "ops": list(self.ops)}

    @staticmethod
    def from_json(obj: Mapping) -> "ContextConfig":
        return ContextConfig(min_group=int(obj.get("min_group", 1024)),
                             min_elements=int(obj.get("min_elements", 4096)), ops=tuple(obj.get("ops", ("osub",))))


@dataclass(frozen=True)
class ContextEncoded:
    manifest: dict
    blobs: tuple[bytes, ...]

    @property
    def nbytes(self) -> int:
        return sum(len(b) for b in self.blobs)


# -- contexts, groups and the shared element order ---------------------------------------------

def parent_exponent(base_words: np.ndarray, dtype: str) -> np.ndarray:
    """The exponent field of every parent element (uint8 for <= 8 exponent bits, else uint16)."""
    exp_bits, man_bits = FLOAT_FORMATS[dtype]
    fields = (base_words >> base_words.dtype.type(man_bits)) & base_words.dtype.type((1 << exp_bits) - 1)
    return fields.astype(np.uint8 if exp_bits <= 8 else np.uint16)


def merge_bins(hist: np.ndarray, min_group: int) -> np.ndarray:
    """Bin -> group label: non-empty bins in increasing order, merged until a group holds >= min_group.

    A trailing group below ``min_group`` joins the one before it, so a group is small only
    when the whole histogram is. Labels of non-empty bins never decrease and have no gaps;
    empty bins get label 0 (they hold nothing). Depends on ``hist`` only, which the decoder
    recomputes from what it already knows (the parent, the decoded counts).
    """
    if min_group < 1:
        raise ValueError(f"merge_bins: min_group must be at least 1, not {min_group} (no group would ever close)")
    labels = np.zeros(len(hist), dtype=np.int64)
    bins = np.flatnonzero(hist)
    total = np.cumsum(hist[bins])
    # a group ends at the first bin where its running total reaches min_group: one search per group
    # (decoding calls this for every tensor and byte count; a loop over the bins cost ~10% of a decode)
    ends, start, done = [], 0, 0
    while start < len(bins):
        end = int(np.searchsorted(total, done + min_group))   # first bin with total >= done + min_group
        if end >= len(bins):
            break
        ends.append(end)
        start, done = end + 1, int(total[end])
    if start < len(bins) and ends:
        ends[-1] = len(bins) - 1          # the trailing group below min_group joins the one before
    elif start < len(bins):
        ends.append(len(bins) - 1)        # one group, smaller than min_group: the whole histogram
    group_of_bin = np.zeros(len(bins), dtype=np.int64)
    if len(ends) > 1:
        group_of_bin[np.asarray(ends[:-1]) + 1] = 1
    labels[bins] = np.cumsum(group_of_bin)
    return labels


def _sizes_of(labels: np.ndarray, hist: np.ndarray) -> np.ndarray:
    """Elements per group, in group order (no group is empty)."""
    sizes = np.bincount(labels, weights=hist, minlength=1).astype(np.int64)
    return sizes[sizes > 0]


def _group_sizes(hist: np.ndarray, min_group: int) -> np.ndarray:
    return _sizes_of(merge_bins(hist, min_group), hist)


@dataclass(frozen=True)
class _Order:
    """Elements in (context group, position) order: the order of the counts streams."""

    by_group: np.ndarray        # permutation: element indices sorted by context group (stable)
    group_sizes: np.ndarray     # elements per context group


def _context_order(ctx: np.ndarray, n_values: int, min_group: int) -> _Order:
    hist = np.bincount(ctx, minlength=n_values)
    labels = merge_bins(hist, min_group)
    gid = labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.uint16)[ctx]
    by_group = _narrow(np.argsort(gid, kind="stable"))
    return _Order(by_group, _sizes_of(labels, hist))  # = np.bincount(gid), without a pass over the elements


def _narrow(positions: np.ndarray) -> np.ndarray:
    """Element positions as int32 where they fit: argsort's int64 permutations are 4x a bfloat16
    tensor each, and an encode held three of them at once (a delta's peak was ~8x its tensor)."""
    return positions.astype(np.int32) if positions.size < 2**31 else positions


def _count_histograms(counts_sorted: np.ndarray, group_sizes: np.ndarray, itemsize: int) -> np.ndarray:
    """hist[c, g]: elements of context group g with c significant bytes (groups are contiguous here)."""
    hist = np.zeros((itemsize + 1, max(len(group_sizes), 1)), dtype=np.int64)
    for g, part in enumerate(_split(counts_sorted, group_sizes)):
        hist[:, g] = np.bincount(part, minlength=itemsize + 1)
    return hist


def pack_counts(counts: np.ndarray, itemsize: int) -> bytes:
    """``counts`` (values 0..itemsize) as base-(itemsize+1) digits, COUNTS_PER_BYTE[itemsize] per byte."""
    k, radix = COUNTS_PER_BYTE[itemsize], itemsize + 1
    padded = np.zeros(-(-counts.size // k) * k, dtype=np.uint8)
    padded[:counts.size] = counts
    weights = (radix ** np.arange(k)).astype(np.uint8)
    return (padded.reshape(-1, k) * weights).sum(axis=1, dtype=np.uint8).tobytes()


def _digit_table(itemsize: int) -> np.ndarray:
    k, radix = COUNTS_PER_BYTE[itemsize], itemsize + 1
    codes = np.arange(256)
    return np.stack([(codes // radix ** j) % radix for j in range(k)], axis=1).astype(np.uint8)


_DIGITS = {s: _digit_table(s) for s in COUNTS_PER_BYTE}


def unpack_counts(packed: np.ndarray, n: int, itemsize: int) -> np.ndarray:
    """Inverse of :func:`pack_counts` (bytes past the last valid code are damage: checked by the caller)."""
    return _DIGITS[itemsize][packed].reshape(-1)[:n]


def _packed_size(n: int, itemsize: int) -> int:
    return -(-n // COUNTS_PER_BYTE[itemsize])


def _split(values: np.ndarray, sizes: Sequence[int]) -> list[np.ndarray]:
    out, start = [], 0
    for size in sizes:
        out.append(values[start:start + int(size)])
        start += int(size)
    return out


# -- streams ----------------------------------------------------------------------------------

def _optimal_parse() -> zstandard.ZstdCompressor:
    # The segmented codec's measured choice for low-entropy symbol streams (storage/segmented.py):
    # the optimal parser with a 128 KiB window stays within a few percent of the order-0 bound,
    # where zstd's fast levels pay for chance matches.
    params = zstandard.ZstdCompressionParameters.from_level(
        3, strategy=zstandard.STRATEGY_BTULTRA2, window_log=17, chain_log=16, hash_log=16,
        search_log=3, min_match=7, target_length=32, write_content_size=0,
        format=zstandard.FORMAT_ZSTD1_MAGICLESS)   # the container says it is zstd: 4 bytes less per stream
    return zstandard.ZstdCompressor(compression_params=params)


def _match_probe() -> zstandard.ZstdCompressor:
    """zstd's fastest parse with the optimal parser's window and shortest match (see _pack)."""
    params = zstandard.ZstdCompressionParameters.from_level(
        1, window_log=17, hash_log=17, min_match=7, write_content_size=0,
        format=zstandard.FORMAT_ZSTD1_MAGICLESS)
    return zstandard.ZstdCompressor(compression_params=params)


#: the optimal parser runs on a stream only where the probe's frame is below this share of the
#: smaller of rANS and raw (see _pack)
_PROBE_MUST_REACH = 1.1


def _pack(data: bytes, cctx: zstandard.ZstdCompressor, noise: bool,
          probe: Optional[zstandard.ZstdCompressor] = None) -> tuple[bytes, int]:
    """The smallest of the stream stored raw, as a zstd frame and as an rANS stream (raw on ties,
    then zstd over rANS).

    zstd can win where a stream repeats (its matches); rANS where it is short or skewed (no frame,
    a cheap table, fractions of a bit per symbol). A noise stream is stored raw without trying.

    With ``probe`` (:func:`_match_probe`), ``cctx`` (the optimal parser, 1-5 MB/s on these
    streams) runs only where the probe's frame is below 1.1x the smaller of rANS and raw: without
    repeats zstd codes literals with Huffman, which an order-0 rANS stream never loses to, and the
    repeats the optimal parser uses show in the fast parse too. Measured on the three trajectories
    of benchmarks/archive_context.py (5,823 streams): it no longer runs on 2,092 of them, where it
    spent 6.8 of its 9.6 s and had saved 4.5 KB (of 23.1 MB stored). On a 300 MB bfloat16 smoke
    test it was half of the context coder's time and saved 5.6 KB in all."""
    if not data:
        return data, CODING_RAW
    hist = kernels.byte_histogram(data)
    if noise and entropy_of_histogram(hist) >= _NOISE_BITS_PER_BYTE * len(data):
        return data, CODING_RAW
    ranked = rans.encode(data, hist)
    cheapest = min(len(data), len(ranked) if ranked is not None else len(data))
    zstd_coded = None
    if probe is None or len(probe.compress(data)) < _PROBE_MUST_REACH * cheapest:
        zstd_coded = cctx.compress(data)
    best = (data, CODING_RAW)
    for coded, coding in ((zstd_coded, CODING_ZSTD), (ranked, CODING_RANS)):
        if coded is not None and len(coded) < len(best[0]):
            best = (coded, coding)
    return best


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(view: memoryview, pos: int, blob_hash: str) -> tuple[int, int]:
    value = shift = 0
    while pos < len(view) and shift < 64:
        byte = view[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise CorruptBlobError(blob_hash, _TABLE_DAMAGE[-1])


def _container(streams: Sequence[tuple[bytes, int]]) -> bytes:
    """``MAGIC | varint stream count | per stream varint(stored length << 2 | coding) | the streams``."""
    head = [MAGIC, _varint(len(streams))] + [_varint(len(d) << 2 | c) for d, c in streams]
    return b"".join(head + [d for d, _ in streams])


@dataclass(frozen=True)
class _Container:
    """A DCX1 or DCX2 blob, unpacked: where each of its streams lies."""

    magic: bytes
    view: memoryview                            # the whole blob
    offsets: list[int]                          # where each stream starts in the blob, in blob order
    lengths: list[int]                          # its stored length
    codings: list[int]                          # its coding (CODING_RAW, CODING_ZSTD or CODING_RANS)

    def stream(self, i: int) -> memoryview:
        return self.view[self.offsets[i]:self.offsets[i] + self.lengths[i]]


#: what mh_ctx_stream_table's statuses mean (the Python reader below raises the same)
_TABLE_DAMAGE = {-1: "context-coded blob's stream table is cut short",
                 -2: "context-coded blob lists more streams than it holds",
                 -3: "context-coded blob has trailing bytes",
                 -4: "context-coded blob lists more streams than the coder writes for any tensor"}
#: streams a blob may list: the coder writes at most one counts stream per context group (2,048 at
#: most, float64's exponent values), one lead stream per group and byte count (8 x 2,048) and 7 low
#: streams, 18,439 in all; a damaged count above this is refused before anything is sized by it
MAX_STREAMS = 1 << 16


def _unpack_container(blob: bytes, blob_hash: str) -> _Container:
    """Where the streams of a DCX1 or DCX2 blob lie, each checked to lie inside it."""
    view = memoryview(blob)
    if len(view) < 4 or bytes(view[:4]) not in CODINGS:
        if len(view) < 8:
            raise CorruptBlobError(blob_hash, "context-coded blob is shorter than its header")
        raise CorruptBlobError(blob_hash, f"not a context-coded blob (magic {bytes(view[:4])!r})")
    magic = bytes(view[:4])
    if magic == MAGIC and kernels.LIB is not None:
        table = kernels.stream_table(view)
        if isinstance(table, int):
            raise CorruptBlobError(blob_hash, _TABLE_DAMAGE.get(table) or f"stream {-table - 16} of a context-coded blob is damaged")
        return _Container(magic, view, *table)
    return _Container(magic, view, *_stream_table(view, magic, blob_hash))


def _stream_table(view: memoryview, magic: bytes, blob_hash: str) -> tuple[list[int], list[int], list[int]]:
    """(offsets, stored lengths, codings) of a blob's streams, read in Python (DCX1 blobs, and DCX2
    where the kernels are not built)."""
    entries = []
    if magic == MAGIC_V1:
        if len(view) < _HEADER_V1.size:
            raise CorruptBlobError(blob_hash, "context-coded blob is shorter than its header")
        count = _HEADER_V1.unpack_from(view, 0)[1]
        pos = _HEADER_V1.size + count * _ENTRY_V1.size
        if pos > len(view):
            raise CorruptBlobError(blob_hash, _TABLE_DAMAGE[-2])
        if count > MAX_STREAMS:
            raise CorruptBlobError(blob_hash, _TABLE_DAMAGE[-4])
        entries = [_ENTRY_V1.unpack_from(view, _HEADER_V1.size + i * _ENTRY_V1.size) for i in range(count)]
    else:
        count, pos = _read_varint(view, 4, blob_hash)
        if count > len(view):
            raise CorruptBlobError(blob_hash, _TABLE_DAMAGE[-2])
        if count > MAX_STREAMS:
            raise CorruptBlobError(blob_hash, _TABLE_DAMAGE[-4])
        for _ in range(count):
            entry, pos = _read_varint(view, pos, blob_hash)
            entries.append((entry >> 2, entry & 3))
    offsets, lengths, codings = [], [], []
    for i, (length, coding) in enumerate(entries):
        if coding not in CODINGS[magic] or pos + length > len(view):
            raise CorruptBlobError(blob_hash, f"stream {i} of a context-coded blob is damaged")
        offsets.append(pos)
        lengths.append(length)
        codings.append(coding)
        pos += length
    if pos != len(view):
        raise CorruptBlobError(blob_hash, _TABLE_DAMAGE[-3])
    return offsets, lengths, codings


def blob_codings(blob: bytes) -> list[int]:
    """The coding of every stream of a blob, in order (CODING_RAW, CODING_ZSTD or CODING_RANS)."""
    return list(_unpack_container(blob, "<blob>").codings)


def blob_streams(manifest: Mapping, blob: bytes, base_raw: bytes | memoryview) -> list[bytes]:
    """The decoded bytes of every stream of a blob, in order (golden tests compare these: zstd's
    compressed bytes may change between its releases). An rANS stream does not record its length:
    the decoder knows it from the parent and the streams before it, so this decodes the tensor."""
    itemsize = ITEMSIZES[manifest["dtype"]]
    streams = _Streams(_unpack_container(blob, "<blob>"), "<blob>", record=True)
    decode_delta_words(streams, np.frombuffer(base_raw, dtype=UINT_OF_SIZE[itemsize]), manifest["dtype"],
                       _min_group_of(manifest))
    return streams.recorded


# -- encode -----------------------------------------------------------------------------------

def _itemsize(dtype: str, raw_len: int, base_len: int) -> int:
    if dtype not in ITEMSIZES:
        raise CodecError(f"the context coder takes float16, bfloat16, float32 or float64 tensors, not {dtype}; "
                         "encode this tensor with the segmented codec")
    if raw_len != base_len:
        raise CodecError("the delta base has a different size than the tensor; pass a base of the same dtype and shape")
    if raw_len % ITEMSIZES[dtype]:
        raise CodecError(f"{raw_len} bytes are not a whole number of {dtype} elements")
    return ITEMSIZES[dtype]


def delta_streams(words: np.ndarray, base_words: np.ndarray, op: str, dtype: str,
                  min_group: int) -> list[tuple[bytes, bool]]:
    """(stream bytes, is noise) in blob order, uncompressed (see the module docstring)."""
    if kernels.LIB is not None and kernels.aligned(words) and kernels.aligned(base_words):
        return _delta_streams_compiled(words, base_words, op, dtype, min_group)
    s = words.itemsize
    z = apply_delta(op, words, base_words)
    order = _context_order(parent_exponent(base_words, dtype), 1 << FLOAT_FORMATS[dtype][0], min_group)
    by_group, group_sizes = order.by_group, order.group_sizes
    del order
    counts_sorted = byte_counts(z)[by_group]
    out = [(pack_counts(part, s), False) for part in _split(counts_sorted, group_sizes)]
    # -> (count, context group, position) order
    positions = by_group[_narrow(np.argsort(counts_sorted, kind="stable"))]
    del by_group
    hist2 = _count_histograms(counts_sorted, group_sizes, s)
    per_count = hist2.sum(axis=1)
    zz = z[positions].view(np.uint8).reshape(-1, s)
    del z, positions
    starts = np.concatenate(([0], np.cumsum(per_count)))
    for c in range(1, s + 1):
        lead = zz[starts[c]:starts[c + 1], c - 1]
        out += [(part.tobytes(), False) for part in _split(lead, _group_sizes(hist2[c], min_group))]
    for c in range(2, s + 1):
        out.append((zz[starts[c]:starts[c + 1], :c - 1].tobytes(), True))
    return out


def _delta_streams_compiled(words: np.ndarray, base_words: np.ndarray, op: str, dtype: str,
                            min_group: int) -> list[tuple[bytes, bool]]:
    """:func:`delta_streams` by the compiled kernels (storage/_context_kernels.c): two passes over the
    elements in position order (deltas, counts and their histogram; then every byte to its stream's
    cursor) instead of two stable sorts and three gathers. The same streams, byte for byte
    (tests/test_kernels.py)."""
    s = words.itemsize
    exp_bits, man_bits = FLOAT_FORMATS[dtype]
    hist = kernels.exponent_histogram(base_words, man_bits, exp_bits)
    labels = merge_bins(hist, min_group)
    group_sizes = _sizes_of(labels, hist)
    z, counts, hist2 = kernels.context_delta_counts(words, base_words, man_bits, exp_bits, labels, len(group_sizes), op)
    counts_sorted, leads, lows = kernels.context_scatter(z, base_words, man_bits, exp_bits, labels, counts,
                                                         group_sizes, hist2)
    del z, counts
    out = [(pack_counts(part, s), False) for part in _split(counts_sorted, group_sizes)]
    for c in range(1, s + 1):
        out += [(part.tobytes(), False) for part in _split(leads[c], _group_sizes(hist2[c], min_group))]
    for c in range(2, s + 1):
        out.append((lows[c].tobytes(), True))
    return out


def encode_context(raw: bytes | memoryview, dtype: str, shape: Sequence[int], *, base_raw: bytes | memoryview,
                   base_hash: str, config: ContextConfig = ContextConfig()) -> Optional[ContextEncoded]:
    """The context-coded delta of ``raw`` against ``base_raw``; None when the coder does not apply.

    It does not apply to tensors below ``config.min_elements`` elements. The caller compares
    the result's size with its other encodings and keeps the smallest.
    """
    from .objects import content_hash

    itemsize = _itemsize(dtype, len(raw), len(base_raw))
    if len(raw) // itemsize < config.min_elements:
        return None
    words = np.frombuffer(raw, dtype=UINT_OF_SIZE[itemsize])
    base_words = np.frombuffer(base_raw, dtype=UINT_OF_SIZE[itemsize])
    cctx, probe = _optimal_parse(), _match_probe()
    store = zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters.from_level(
        1, write_content_size=0, format=zstandard.FORMAT_ZSTD1_MAGICLESS))
    best: Optional[tuple[bytes, str]] = None
    for op in config.ops:
        blob = _container([_pack(data, store, noise) if noise else _pack(data, cctx, noise, probe)
                           for data, noise in delta_streams(words, base_words, op, dtype, config.min_group)])
        if best is None or len(blob) < len(best[0]):
            best = (blob, op)
    assert best is not None
    blob, op = best
    manifest = {
        "format": FORMAT, "codec": CODEC_ID, "dtype": dtype, "context": CONTEXT_PARENT_EXPONENT,
        "min_group": config.min_group, "delta": {"base": base_hash, "op": op},
        "segments": [content_hash(blob)], "sizes": [len(blob)],
    }
    return ContextEncoded(manifest, (blob,))


# -- decode -----------------------------------------------------------------------------------

_DECOMPRESSORS = threading.local()


def _decompressor(frame_format: int) -> zstandard.ZstdDecompressor:
    """This thread's zstd decompressor for ``frame_format``: making one per tensor was ~1% of decoding
    the fine-tune's small tensors, and one may not be used by two threads at once."""
    cache = getattr(_DECOMPRESSORS, "by_format", None)
    if cache is None:
        cache = _DECOMPRESSORS.by_format = {}
    dctx = cache.get(frame_format)
    if dctx is None:
        dctx = cache[frame_format] = zstandard.ZstdDecompressor(format=frame_format)
    return dctx


class _Streams:
    """Hands out a blob's streams in order, decoded and checked against their expected size."""

    def __init__(self, container: _Container, blob_hash: str, record: bool = False) -> None:
        self.container, self.blob_hash, self.next = container, blob_hash, 0
        self.count = len(container.offsets)
        self.dctx = _decompressor(zstandard.FORMAT_ZSTD1 if container.magic == MAGIC_V1 else zstandard.FORMAT_ZSTD1_MAGICLESS)
        self.recorded: Optional[list[bytes]] = [] if record else None

    def take(self, expected: int) -> bytes | bytearray:
        if self.next >= self.count:
            raise CorruptBlobError(self.blob_hash, "context-coded blob has fewer streams than the tensor needs")
        data, coding = self.container.stream(self.next), self.container.codings[self.next]
        self.next += 1
        if coding == CODING_ZSTD:
            try:
                out = self.dctx.decompress(data, max_output_size=max(expected, 1))
            except zstandard.ZstdError as exc:
                raise CorruptBlobError(self.blob_hash, f"zstd: {exc}") from None
        elif coding == CODING_RANS:
            out = rans.decode(data, expected, self.blob_hash)
        else:
            out = data
        if len(out) != expected:
            raise CorruptBlobError(self.blob_hash, f"a stream decoded to {len(out)} bytes, expected {expected}")
        if self.recorded is not None:
            self.recorded.append(bytes(out))
        return out

    def take_groups(self, sizes: Sequence[int]) -> np.ndarray:
        """The next ``len(sizes)`` streams, decoded to ``sizes`` bytes each, one after the other in one array.

        A single stream is not copied (a raw one stays a view of the blob). Otherwise each is decoded
        into its place: the rANS streams by one kernel call for all of them (a call per stream cost
        as much as decoding a few thousand symbols), zstd frames and raw streams copied in."""
        if len(sizes) == 1:
            return np.frombuffer(self.take(int(sizes[0])), dtype=np.uint8)
        if kernels.LIB is None or self.recorded is not None:
            parts = [self.take(int(size)) for size in sizes]
            return np.frombuffer(b"".join(parts), dtype=np.uint8) if parts else np.zeros(0, np.uint8)
        out = np.empty(int(sum(sizes)), dtype=np.uint8)
        rans: list[tuple[int, int, int, int]] = []     # (offset in the blob, stored length, offset in out, symbols)

        def decode_rans() -> None:
            """The rANS streams met so far; called before any other error is raised, so that damage is
            reported for the first damaged stream, as decoding one stream at a time would."""
            if rans and kernels.rans_decode_many(self.container.view, rans, out) >= 0:
                raise CorruptBlobError(self.blob_hash, "an rANS stream is damaged")
            rans.clear()

        start = 0
        try:
            for size in sizes:
                size = int(size)
                if self.next < self.count and self.container.codings[self.next] == CODING_RANS:
                    rans.append((self.container.offsets[self.next], self.container.lengths[self.next], start, size))
                    self.next += 1
                else:
                    out[start:start + size] = np.frombuffer(self.take(size), dtype=np.uint8)
                start += size
        except CorruptBlobError:
            decode_rans()
            raise
        decode_rans()
        return out

    def finish(self) -> None:
        if self.next != self.count:
            raise CorruptBlobError(self.blob_hash, "context-coded blob has more streams than the tensor needs")


def _take_counts(streams: _Streams, group_sizes: np.ndarray, s: int) -> list[np.ndarray]:
    """Every context group's packed counts, in group order, each checked for out-of-range codes."""
    limit = (s + 1) ** COUNTS_PER_BYTE[s]
    out = []
    for size in group_sizes:
        packed = np.frombuffer(streams.take(_packed_size(int(size), s)), dtype=np.uint8)
        if packed.size and int(packed.max()) >= limit:
            raise CorruptBlobError(streams.blob_hash, "a byte-count code is out of range")
        out.append(packed)
    return out


def decode_words_compiled(streams: _Streams, base_words: np.ndarray, dtype: str, min_group: int, op: str,
                          out: np.ndarray) -> None:
    """The tensor's words into ``out``, decoded by the compiled kernels (storage/_context_kernels.c):
    what :func:`decode_delta_words` and ``undo_delta`` give. Three kernel calls, each as soon as the
    streams it needs are in: the context groups (from the parent), the counts and the lead streams'
    sizes (from the counts streams), every element's word (from the lead and low streams)."""
    s = base_words.itemsize
    exp_bits, man_bits = FLOAT_FORMATS[dtype]
    labels, group_sizes = kernels.parent_groups(base_words, man_bits, exp_bits, min_group)
    # every group's packed counts in one array; the kernel checks every code (padding included)
    plan = kernels.count_plan(streams.take_groups(-(-group_sizes // COUNTS_PER_BYTE[s])), group_sizes, s, min_group)
    if plan is None:
        raise CorruptBlobError(streams.blob_hash, "a byte-count code is out of range")
    lead_bytes = streams.take_groups(plan.lead_sizes)       # the lead streams of every count, in blob order
    ends = np.cumsum(plan.per_count).tolist()               # count c's lead bytes: ends[c - 1]:ends[c]
    leads = [b""] + [lead_bytes[ends[c - 1] - ends[0]:ends[c] - ends[0]] for c in range(1, s + 1)]
    lows = [b"", b""] + [streams.take(int(plan.per_count[c]) * (c - 1)) for c in range(2, s + 1)]
    streams.finish()
    kernels.context_words(base_words, man_bits, exp_bits, labels, plan, group_sizes, leads, lows, op, out)


def decode_delta_words(streams: _Streams, base_words: np.ndarray, dtype: str,
                       min_group: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions, delta words) of the elements whose delta word is not zero (inverse of :func:`delta_streams`).

    Only those elements are placed and un-delta'd: an element with a zero delta equals its
    parent (for every op), and fine-tuning leaves many unchanged (embedding rows of unseen tokens).
    """
    s = base_words.itemsize
    order = _context_order(parent_exponent(base_words, dtype), 1 << FLOAT_FORMATS[dtype][0], min_group)
    parts = [unpack_counts(packed, int(size), s)
             for packed, size in zip(_take_counts(streams, order.group_sizes, s), order.group_sizes)]
    counts_sorted = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
    # The encoder's (count, group, position) order restricted to non-zero counts: zeros come first
    # in it, so sorting only the non-zero ones by count gives the same order for the rest.
    nonzero = np.flatnonzero(counts_sorted)
    by_count = nonzero[np.argsort(counts_sorted[nonzero], kind="stable")]
    hist2 = _count_histograms(counts_sorted, order.group_sizes, s)
    per_count = hist2.sum(axis=1)
    zz = np.zeros((nonzero.size, s), dtype=np.uint8)
    starts = np.concatenate(([0], np.cumsum(per_count[1:])))  # block of count c: starts[c-1]:starts[c]
    for c in range(1, s + 1):
        zz[starts[c - 1]:starts[c], c - 1] = streams.take_groups(_group_sizes(hist2[c], min_group))
    for c in range(2, s + 1):
        m = int(per_count[c])
        zz[starts[c - 1]:starts[c], :c - 1] = np.frombuffer(streams.take(m * (c - 1)), dtype=np.uint8).reshape(m, c - 1)
    streams.finish()
    return order.by_group[by_count], zz.view(UINT_OF_SIZE[s]).reshape(nonzero.size)


def _min_group_of(manifest: Mapping) -> int:
    """The manifest's min_group, checked: with 0 or less no group would ever close (the decoder would
    loop forever merging bins), so a damaged or hostile manifest says so instead."""
    value = manifest.get("min_group")
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise DamagedEncodingError(f"context-coded manifest has min_group {value!r}; the coder writes a whole "
                                   "number of at least 1, so the manifest is damaged")
    # any min_group above a tensor's element count merges the same way (one group); the kernels take int64
    return min(value, 1 << 62)


def decode_context(manifest: Mapping, fetch: Callable[[str], bytes], nbytes: int, *,
                   base: Optional[Callable[[str], bytes]] = None,
                   out: Optional[memoryview] = None) -> bytes | bytearray | memoryview:
    """The exact raw bytes of a context-coded tensor (needs ``base``: tensor_hash -> parent's raw bytes).

    ``out`` (``nbytes`` writable bytes; CodecError otherwise): where the compiled decoder
    writes the words when it can (``out`` aligned to the word size), returning ``out`` itself; a
    checkout decodes into the buffer it writes out instead of a new one copied there. Elsewhere the
    result is a buffer of its own, as without ``out``."""
    if manifest.get("format") not in FORMATS or manifest.get("codec") != CODEC_ID:
        raise CodecError(f"not a context-coded manifest (codec {manifest.get('codec')!r}); decode it with its own codec")
    if manifest.get("context") != CONTEXT_PARENT_EXPONENT:
        raise UnknownFormatError(f"unknown context model {manifest.get('context')!r} in manifest")
    delta = manifest["delta"]
    if delta["op"] not in OPS:
        raise UnknownFormatError(f"unknown delta op {delta['op']!r} in a context-coded manifest")
    dtype = manifest["dtype"]
    if dtype not in ITEMSIZES:
        raise DamagedEncodingError(f"context-coded manifest names dtype {dtype!r}, which this codec never writes")
    if nbytes % ITEMSIZES[dtype]:
        raise DamagedEncodingError(f"{nbytes} bytes are not a whole number of {dtype} elements")
    min_group = _min_group_of(manifest)
    if base is None:
        raise CodecError("this tensor is stored as a delta; pass base= (a callback returning the "
                         f"base tensor {delta['base'][:16]}'s raw bytes) to decode it")
    base_raw = base(delta["base"])
    if len(base_raw) != nbytes:
        raise DamagedEncodingError("the delta base has a different size than the tensor; the base named in "
                                   "the manifest is wrong or damaged")
    itemsize = ITEMSIZES[dtype]
    (blob_hash,) = manifest["segments"]
    streams = _Streams(_unpack_container(fetch(blob_hash), blob_hash), blob_hash)
    base_words = np.frombuffer(base_raw, dtype=UINT_OF_SIZE[itemsize])
    if out is not None and (memoryview(out).readonly or memoryview(out).nbytes != nbytes):
        raise CodecError(f"decode_context: out must be {nbytes} writable bytes")
    if kernels.LIB is not None and kernels.aligned(base_words):
        target = out   # the caller's buffer, where it is aligned to the words
        if target is None or not kernels.aligned(np.frombuffer(target, dtype=base_words.dtype)):
            target = unset_bytearray(nbytes)   # never zeroed: the kernel writes every word
        words = np.frombuffer(target, dtype=base_words.dtype)
        if kernels.aligned(words):
            decode_words_compiled(streams, base_words, dtype, min_group, delta["op"], words)
            return target
    positions, z = decode_delta_words(streams, base_words, dtype, min_group)
    words = base_words.copy()
    words[positions] = undo_delta(delta["op"], z, base_words[positions])
    return words.tobytes()


def context_blobs(manifest: Mapping) -> list[str]:
    return list(manifest.get("segments", []))


class ContextCodec:
    """The ``storage.codecs.Codec`` contract for format 3 (registered below: a repository that holds a
    format-3 manifest must be able to read it forever)."""

    id = CODEC_ID
    config_type = ContextConfig

    def encode(self, raw, dtype, shape, config: ContextConfig, *, base_raw=None, base_hash=None, scratch=None):
        if base_raw is None or base_hash is None:
            raise CodecError("the context codec stores deltas only; pass base_raw= and base_hash=, "
                             "or encode this tensor with the segmented codec")
        result = encode_context(raw, dtype, shape, base_raw=base_raw, base_hash=base_hash, config=config)
        if result is None:
            raise CodecError(f"the tensor has fewer than {config.min_elements} elements; encode it with the segmented codec")
        return result.manifest, result.blobs

    def decode(self, manifest, fetch, nbytes, *, base=None, out=None):
        return decode_context(manifest, fetch, nbytes, base=base, out=out)

    def blobs(self, manifest):
        return context_blobs(manifest)


register_codec(ContextCodec())
