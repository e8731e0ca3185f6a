"""Manifest format 2 (codec ``segmented``): bit-field segments, optional delta.

Encoding a tensor:

1. (opt-in only) a lossy encoding turns it into a smaller stored tensor;
2. with a base tensor, a lossless delta of the bit patterns (``xor``, ``sub``,
   ``osub``) or none, chosen per tensor by the smallest estimated size
   (order-0 byte entropy of each segment, which tracks zstd's size closely on
   these near-memoryless streams); when the two best estimates are within 3%
   both are compressed and the smaller kept (benchmarks/archive.py reports how
   often the final choice is the truly smallest);
3. the words are split into bit-field segments (exponent first for floats, or
   byte groups for integers and deltas that are not XOR), or for deltas into
   byte-class segments when that is estimated smaller;
4. every segment is stored as one blob: noise-like segments (entropy >= 7.9
   bits/byte, the low mantissa bytes) raw; a 7-bit field that is noise at its
   width (the top mantissa bits) as bare bits (bits7.py); planes of few distinct
   values (an exponent) packed to 4- or 2-bit codes before zstd (planepack.py)
   where that is smaller; the others with zstd's optimal parser, which gets
   within a few percent of their order-0 entropy (see _optimal_parse_params).
   Commits use zstd's fast levels and judge noise and packing from a sample
   (_compress).

Manifest (JSON, stored in the catalog)::

    {"format": 2, "codec": "segmented", "dtype": "float32",
     "layout": [[23, 8], [31, 1], [16, 7], [8, 8], [0, 8]],
     "packing": "fields" | "byteclass" (deltas only, see byteclass.py; layout []),
     "segments": ["<blake2b>", ...], "sizes": [1234, ...], "zstd": "auto" | level,
     "codings": ["zstd" | "raw" | "bits7" | "pack4" | "pack2", ...] (absent: all zstd),
     "delta": null | {"base": "<tensor_hash>", "op": "xor" | "sub" | "osub"},
     "lossy": null | {"kind": "float16" | "bfloat16" | "kbit", "bits": k,
                      "stored_dtype": "...", "table": "<blake2b>" (kbit)}}
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ClassVar, Callable, Mapping, Optional, Sequence

import numpy as np
import zstandard

from . import kernels
from .buffers import unset_bytearray
from .bits7 import CODING as BITS7, check_length as check_bits7_length, decode_bits7, encode_bits7
from .bitfields import (FLOAT_FORMATS, UINT_OF_SIZE, Layout, byte_layout, check_layout,
                        default_layout, join_fields, segment_length, split_fields)
from .byteclass import PACKING as PACKING_BYTECLASS, expected_lengths, join_byteclass, split_byteclass
from .codecs import register_codec
from .deltas import DELTA_OPS, apply_delta, undo_delta
from .dtypes import DTYPE_SIZES
from .errors import CodecError, CorruptBlobError, DamagedEncodingError, StorageError, UnknownFormatError
from .lossy import (LOSSY_SOURCES, LossyConfig, bfloat16_bits, from_float64, quantization_table,
                    quantize, to_float64)
from .objects import content_hash
from .scratch import EncodeScratch
from .planepack import CODINGS as PACKED_CODINGS, best_window, decode_packed, encode_packed, escape_mismatch, packed_codes

FORMAT = 2
CODEC_ID = "segmented"
DELTA_CHOICES = ("auto", "none") + DELTA_OPS
LAYOUT_CHOICES = ("exponent-first", "bytes")

#: segments below this size are decompressed inline; above it, on threads
#: (zstandard releases the GIL, so segments of one tensor decode in parallel)
_PARALLEL_DECODE_BYTES = 1 << 20
_POOL: Optional[ThreadPoolExecutor] = None
_POOL_LOCK = threading.Lock()


def _decode_pool() -> ThreadPoolExecutor:
    """The decode threads, started by the first large decode (importing this module starts nothing)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="storage-zstd")
        return _POOL


def _forget_pool_in_child() -> None:
    # A forked child inherits the pool object but not its threads: it builds its own on demand.
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)


@dataclass(frozen=True)
class SegmentedConfig:
    """Everything that decides how a tensor is encoded (all of it lossless by default)."""

    level: int = 3                     # zstd level, used when strategy == "level"
    strategy: str = "auto"             # auto: per segment, optimal parse or store, by measured entropy
    layout: str = "exponent-first"     # float field order; integers always use byte groups
    delta: str = "auto"                # with a base: auto picks the smallest of none/xor/sub/osub
    lossy: Optional[LossyConfig] = None  # never applied unless set

    def __post_init__(self) -> None:
        if self.delta not in DELTA_CHOICES:
            raise CodecError(f"unknown delta mode {self.delta!r}; use one of {DELTA_CHOICES}")
        if self.layout not in LAYOUT_CHOICES:
            raise CodecError(f"unknown layout {self.layout!r}; use one of {LAYOUT_CHOICES}")
        if self.strategy not in ("auto", "level"):
            raise CodecError(f"unknown zstd strategy {self.strategy!r}; use 'auto' or 'level'")
        if not 1 <= self.level <= 22:
            raise CodecError(f"zstd level {self.level} is out of range; use 1..22")

    def to_json(self) -> dict:
        return {"level": self.level, "strategy": self.strategy, "layout": self.layout, "delta": self.delta,
                "lossy": self.lossy.to_json() if self.lossy else None}

    @staticmethod
    def from_json(obj: Mapping) -> "SegmentedConfig":
        lossy = obj.get("lossy")
        return SegmentedConfig(level=int(obj.get("level", 3)), strategy=str(obj.get("strategy", "auto")), layout=str(obj.get("layout", "exponent-first")),
                               delta=str(obj.get("delta", "auto")),
                               lossy=LossyConfig.from_json(lossy) if lossy else None)


@dataclass(frozen=True)
class EncodeResult:
    manifest: dict
    blobs: tuple[bytes | memoryview, ...]   # raw segments and bits7 blobs are views, not copies
    estimate_bits: float = 0.0   # order-0 entropy bound of the chosen transform, in bits
    candidates: dict = field(default_factory=dict)  # op -> estimated bits (for benchmarks)


def layout_for(dtype: str, itemsize: int, op: Optional[str], config: SegmentedConfig) -> Layout:
    # XOR keeps the float's fields (sign, exponent, mantissa XORed separately);
    # subtraction produces plain integers, whose bytes carry the magnitude.
    if op in ("sub", "osub") or config.layout == "bytes":
        return byte_layout(itemsize)
    return default_layout(dtype, itemsize)


def entropy_bits(segment) -> float:
    """Order-0 entropy of a byte string (any buffer of bytes), in bits (n * H0)."""
    if len(segment) == 0:
        return 0.0
    return entropy_of_histogram(_histogram(segment))


def _words(raw: bytes | memoryview, itemsize: int) -> np.ndarray:
    return np.frombuffer(raw, dtype=UINT_OF_SIZE[itemsize])


#: a segment above this entropy (bits per byte) is noise: zstd at level 1 just stores it
_NOISE_BITS_PER_BYTE = 7.9


def _optimal_parse_params() -> zstandard.ZstdCompressionParameters:
    # Measured on exponent segments (benchmarks/archive.py): zstd's fast levels find
    # chance matches of 3-6 bytes in low-entropy symbol streams and pay more for them
    # than Huffman-coded literals would (level 3: +30% over the order-0 bound). The
    # optimal parser (btultra2) knows better; with a 128 KiB window and a moderate search
    # it matches level 19 within 0.1% (3.5% over the bound) at ~8.5 MB/s, where level 19
    # runs at ~3 MB/s and a shallower search (search_log 1) costs +1.3% size.
    return zstandard.ZstdCompressionParameters.from_level(
        3, strategy=zstandard.STRATEGY_BTULTRA2, window_log=17, chain_log=16, hash_log=16,
        search_log=3, min_match=7, target_length=32, write_content_size=0)


def _tuned_compressor() -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(compression_params=_optimal_parse_params())


#: a commit estimates a segment's entropy from this many evenly spread bytes (16 runs of 4 KiB)
_SAMPLE_RUNS, _SAMPLE_RUN = 16, 4096
#: segments shorter than this are never packed (planepack.py): its header and window would not pay
_PACK_MIN = 4096
#: a commit packs a plane to 4-bit codes when the sample has at most this share of escapes
_PACK_COMMIT_ESCAPES = 1 / 512
#: the archive tries packing wherever escapes are at most this share (it keeps what is smaller)
_PACK_ARCHIVE_ESCAPES = 1 / 64


def _spread_sample(segment: bytes | memoryview) -> memoryview | bytes:
    view = memoryview(segment).cast("B")
    if len(view) <= _SAMPLE_RUNS * _SAMPLE_RUN:
        return view
    step = len(view) // _SAMPLE_RUNS
    return b"".join(view[i * step:i * step + _SAMPLE_RUN] for i in range(_SAMPLE_RUNS))


def _histogram(data) -> np.ndarray:
    return kernels.byte_histogram(data)


def entropy_of_histogram(counts: np.ndarray) -> float:
    """Order-0 entropy, in bits (n * H0), of the bytes whose histogram this is."""
    counts = counts[counts > 0].astype(np.float64)
    n = counts.sum()
    return float(-(counts * np.log2(counts / n)).sum()) if n else 0.0


def _noise(hist: np.ndarray, n: int, width: int = 8) -> bool:
    """Whether ``n`` elements of a ``width``-bit field with this histogram are noise at that
    width (within 0.1 bit of it per element; an empty segment counts as noise)."""
    return n == 0 or entropy_of_histogram(hist) >= (width - 8 + _NOISE_BITS_PER_BYTE) * n


def _bare_bits(width: int, hist: np.ndarray, n: int) -> bool:
    """Whether a field is stored as bare bits (bits7.py): a 7-bit field that is noise at its
    width, which zstd would store no smaller and ~3x slower (both ways)."""
    return width == 7 and _noise(hist, n, 7)


def looks_noisy(segment: bytes | memoryview) -> bool:
    """Whether a segment is noise by the entropy of a spread sample (a float's low mantissa
    bytes): zstd would spend ~1.5 s/GB finding that out and then store it as it is. A sample
    that misjudges a nearly random segment loses at most the few percent it had left."""
    sample = _spread_sample(segment)
    return _noise(_histogram(sample), len(sample))


def _commit_coding(segment: bytes | memoryview, width: int) -> tuple[str, int | None]:
    """(coding, the 4-bit window's lo for "pack4") a commit gives a segment of a ``width``-bit
    field: "raw", "bits7", "pack4" or "zstd", all judged from one spread sample."""
    sample = _spread_sample(segment)
    hist = _histogram(sample)
    if _noise(hist, len(sample)):
        return "raw", None
    if _bare_bits(width, hist, len(sample)):
        return BITS7, None
    if len(segment) < _PACK_MIN:
        return "zstd", None
    lo, covered = best_window(hist, 4)
    return ("pack4", lo) if len(sample) - covered <= _PACK_COMMIT_ESCAPES * len(sample) else ("zstd", None)


def _commit_params(level: int) -> zstandard.ZstdCompressionParameters:
    """The level's parameters with matches of 7 bytes or more and a small hash table.

    Byte planes of floats (exponents, high mantissa bits) are low-entropy symbol streams:
    short chance matches cost more than Huffman-coded literals, and a large table only
    finds more of them. Measured on float32 exponent planes of N(0, 0.02) weights: 3.01x at
    6.0 s/GB against level 1's 2.78x at 7.7 s/GB, and decoding is faster too (fewer sequences).
    """
    return zstandard.ZstdCompressionParameters.from_level(level, min_match=7, hash_log=min(10 + level, 17),
                                                          search_log=1 if level < 3 else 3)


def _raw_blob(segment) -> memoryview:
    """A segment stored as it is: a view of its bytes, not a copy (a copy cost ~0.25 s per GB of
    bfloat16 at commit; the blob is only hashed and written)."""
    return memoryview(np.ascontiguousarray(np.frombuffer(segment, dtype=np.uint8)))


def _compress(segments: Sequence[np.ndarray], widths: Sequence[int],
              config: "SegmentedConfig", scratch: Optional[EncodeScratch] = None,
              ) -> tuple[list[bytes | memoryview], list[str]]:
    """(blobs, coding per blob) of segments holding fields of ``widths`` bits: "zstd" frames,
    "pack4"/"pack2" packed planes (planepack.py), "bits7" bare 7-bit fields (bits7.py), or "raw"
    bytes where compressing would not save anything.

    With ``scratch`` (a commit's; the segments are its buffers too) a bits7 blob is written over
    its own segment, which nothing reads again, and packed codes go to a scratch buffer."""
    if config.strategy == "level":
        cctx = zstandard.ZstdCompressor(compression_params=_commit_params(config.level))
        empty = scratch.empty if scratch is not None else None
        blobs, codings = [], []
        for s, width in zip(segments, widths):
            coding, lo = _commit_coding(s, width)
            if coding == "raw":
                blob = None
            elif coding == BITS7:
                blob = encode_bits7(s, in_place=scratch is not None)
            elif coding == "pack4":
                blob = encode_packed(s, 4, lo, cctx, empty)
            else:
                blob = cctx.compress(s)
            if blob is None or len(blob) >= len(s):
                blob, coding = _raw_blob(s), "raw"
            blobs.append(blob)
            codings.append(coding)
        return blobs, codings
    # Frames omit the content size: the manifest's geometry fixes every segment's length,
    # which decoding checks anyway (a few bytes per segment matter for small tensors).
    store = zstandard.ZstdCompressor(level=1, write_content_size=False)
    tuned = _tuned_compressor()
    packer = zstandard.ZstdCompressor(compression_params=_commit_params(3))
    blobs, codings = [], []
    for s, width in zip(segments, widths):
        hist = _histogram(s)
        noisy = _noise(hist, len(s))
        # the cheap codings first, measured, not estimated: the archive keeps the smallest
        bare = encode_bits7(s) if _bare_bits(width, hist, len(s)) else None
        packs = []
        if not noisy and len(s) >= _PACK_MIN:
            for bits in (4, 2):
                lo, covered = best_window(hist, bits)
                if len(s) - covered <= _PACK_ARCHIVE_ESCAPES * len(s):
                    packs.append((encode_packed(s, bits, lo, packer), f"pack{bits}"))
        cheapest = min([len(b) for b in [bare] if b is not None] + [len(b) for b, _ in packs] + [len(s)])  # or raw
        if noisy:
            blob, coding = store.compress(s), "zstd"
        elif not _optimal_parse_may_win(s, cheapest, tuned):
            blob, coding = None, "zstd"
        else:
            blob, coding = tuned.compress(s), "zstd"
        # ties as ever: bits7 over zstd, zstd over packed, pack4 over pack2
        if bare is not None and (blob is None or len(bare) <= len(blob)):   # a slightly skewed field can favour zstd
            blob, coding = bare, BITS7
        for packed, name in packs:
            if blob is None or len(packed) < len(blob):
                blob, coding = packed, name
        if blob is None or len(blob) >= len(s):  # noise (low mantissa bytes): keep it raw, no frame, no decode
            blob, coding = _raw_blob(s), "raw"
        blobs.append(blob)
        codings.append(coding)
    return blobs, codings


#: the optimal parser is sized on this many spread samples of two of its windows (128 KiB each)
#: before it runs on a whole (non-noise) segment of at least _TUNED_SAMPLE_MIN bytes
_TUNED_WINDOW, _TUNED_SAMPLES = 128 << 10, 4
_TUNED_SAMPLE_MIN = 8 * _TUNED_SAMPLES * _TUNED_WINDOW
#: ... and runs only when the samples say it stores the segment in less than this share of the
#: cheapest coding's bytes
_TUNED_MUST_SAVE = 0.995


def _optimal_parse_may_win(segment, cheapest: int, tuned) -> bool:
    """Whether the optimal parser may store ``segment`` in fewer bytes than ``cheapest`` (the
    smallest packed or bits7 coding of it, or its length: stored raw) by more than half a percent,
    judged on spread samples.

    It runs at 5-25 MB/s (bfloat16 exponent planes / 7-bit mantissa fields): on a 1.16 GB bfloat16
    checkpoint an archive spent ~110 s sizing it, to find the packed planes and bare bits smaller
    than its frames (by 0.3% and 0.02%), and a float32's lowest mantissa byte no smaller than raw.
    Each sample is two windows compressed as one stream, and only the second window's bytes count:
    it is coded, as everywhere in the whole segment, with a full window of history, so repeats
    shorter than a window (a tiled or mostly unchanged plane) show in the estimate as they do in
    the whole (the first window alone would not have them)."""
    if len(segment) < _TUNED_SAMPLE_MIN:
        return True
    view = memoryview(segment).cast("B")
    step, w = len(view) // _TUNED_SAMPLES, _TUNED_WINDOW
    counted = 0
    for i in range(_TUNED_SAMPLES):
        stream = tuned.compressobj()
        stream.compress(view[i * step:i * step + w])
        stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        counted += len(stream.compress(view[i * step + w:i * step + 2 * w]))
        counted += len(stream.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
    return counted * len(view) < _TUNED_MUST_SAVE * cheapest * _TUNED_SAMPLES * w


def encode_segmented(raw: bytes | memoryview, dtype: str, n: int, itemsize: int, *,
                     config: SegmentedConfig = SegmentedConfig(),
                     base_raw: bytes | memoryview | None = None, base_hash: str | None = None,
                     scratch: Optional[EncodeScratch] = None,
                     give_up_above: Optional[float] = None) -> Optional[EncodeResult]:
    """The segmented encoding of ``raw`` (n elements of ``itemsize`` bytes).

    ``give_up_above``: None, without compressing anything, when every option's order-0 estimate
    is above this many bytes (the caller has a smaller encoding; tensors.encode_delta_best).

    ``scratch``: where the temporaries go (scratch.py); the blobs may then be views of its
    buffers, valid until ``scratch.release()``. Used only where a single candidate is encoded
    (a commit's fast path): comparing candidates needs each one's segments intact."""
    lossy_entry = None
    extra_blobs: list[bytes] = []
    stored_dtype = dtype
    if config.lossy is not None:
        raw, stored_dtype, lossy_entry, extra_blobs = _apply_lossy(raw, dtype, config.lossy)
        itemsize = {"float16": 2, "bfloat16": 2, "uint8": 1}[stored_dtype]
        base_raw = None  # a lossy tensor is stored whole: its base would be lossless bytes
    words = _words(raw, itemsize)

    ops: list[Optional[str]] = [None]
    if base_raw is not None and config.delta != "none":
        if base_hash is None:
            raise CodecError("a delta base needs its tensor hash (base_hash=) so the manifest can name it")
        if len(base_raw) != len(raw):
            raise CodecError("the delta base has a different size than the tensor; pass a base of the same dtype and shape")
        if config.delta == "auto":
            ops += [op for op in DELTA_OPS if op != "osub" or dtype in FLOAT_FORMATS]
        else:
            ops = [config.delta]
    base_words = _words(base_raw, itemsize) if base_raw is not None else None

    n_options = len(ops) + sum(op is not None for op in ops)
    top: list = []   # the two options of least estimated size so far (a stable order on ties)
    candidates = {}
    for op in ops:
        data = words if op is None else apply_delta(op, words, base_words)
        layout = layout_for(stored_dtype, itemsize, op, config)
        single = len(ops) == 1 and config.strategy == "level"
        fields = split_fields(data, layout, empty=scratch.empty if scratch is not None and single else None)
        options = [("fields", layout, fields)]
        if op is not None:  # deltas are mostly small words: try byte-class packing too
            options.append((PACKING_BYTECLASS, (), split_byteclass(data)))
        for packing, lay, segments in options:
            # a single candidate (a tensor stored whole) has nothing to choose between:
            # its estimate would cost ~40% of a commit's encoding time for nothing
            bits = sum(entropy_bits(s) for s in segments) if n_options > 1 else 0.0
            candidates[(op or "none") + ("" if packing == "fields" else "+" + packing)] = bits
            # only the two best options keep their segments: all seven of a delta's held ~10x
            # the tensor at once (a 131 MB embedding's archive then needed 1.3 GB)
            top.append((bits, op, lay, segments, packing))
            top.sort(key=lambda o: o[0])
            del top[2:]
        del options, fields, data
    # The order-0 estimate ignores zstd's matches and table costs; when the runner-up is
    # within 3% of the best estimate, compress both and keep the truly smaller one.
    if give_up_above is not None and top[0][0] / 8 > give_up_above:
        return None
    finalists = [o for o in top if o[0] <= top[0][0] * 1.03 + 64]
    del top
    best = None
    for bits, op, layout_, segments, packing in finalists:
        widths = [w for _, w in layout_] if packing == "fields" else [8] * len(segments)
        blobs_, codings_ = _compress(segments, widths, config,
                                     scratch if n_options == 1 and packing == "fields" else None)
        size = sum(len(b) for b in blobs_)
        if best is None or size < best[0]:
            best = (size, bits, op, layout_, packing, blobs_, codings_)
    assert best is not None
    _, bits, op, layout, packing, blobs, codings = best
    manifest = {
        "format": FORMAT, "codec": CODEC_ID, "dtype": dtype,
        "layout": [list(f) for f in layout],
        "packing": packing,
        "segments": [content_hash(b) for b in blobs],
        "sizes": [len(b) for b in blobs],
        "codings": codings,
        "zstd": config.level if config.strategy == "level" else "auto",
        "delta": {"base": base_hash, "op": op} if op is not None else None,
        "lossy": lossy_entry,
    }
    return EncodeResult(manifest, tuple(blobs) + tuple(extra_blobs), bits, candidates)


def _apply_lossy(raw, dtype: str, lossy: LossyConfig):
    if dtype not in LOSSY_SOURCES:
        raise CodecError(f"lossy encoding {lossy.kind} applies to float tensors, not {dtype}; "
                         "drop the lossy option for this tensor")
    values = to_float64(bytes(raw), dtype)
    entry = {"kind": lossy.kind, "bits": lossy.bits}
    if lossy.kind == "float16":
        with np.errstate(over="ignore"):
            stored = values.astype("<f2").tobytes()
        entry["stored_dtype"] = "float16"
        return stored, "float16", entry, []
    if lossy.kind == "bfloat16":
        stored = bfloat16_bits(values.astype("<f4")).tobytes()
        entry["stored_dtype"] = "bfloat16"
        return stored, "bfloat16", entry, []
    table = quantization_table(values, lossy.bits)
    table_blob = table.astype("<f8").tobytes()
    entry["stored_dtype"] = "uint8"
    entry["table"] = content_hash(table_blob)
    return quantize(values, table).tobytes(), "uint8", entry, [table_blob]


def decompress_segment(data: bytes, blob_hash: str, expected: int, coding: str = "zstd") -> bytes | memoryview:
    """A segment's ``expected`` bytes from its stored blob ``data`` (``blob_hash`` names it in errors)."""
    if coding == "raw":
        out = data
    elif coding == "zstd":
        try:
            out = zstandard.ZstdDecompressor().decompress(data, max_output_size=max(expected, 1))
        except zstandard.ZstdError as exc:
            raise CorruptBlobError(blob_hash, f"zstd: {exc}") from None
    elif coding == BITS7:
        out = decode_bits7(data, expected, blob_hash)
    elif coding in PACKED_CODINGS:
        out = decode_packed(data, PACKED_CODINGS[coding], expected, blob_hash)
    else:
        raise UnknownFormatError(f"unknown segment coding {coding!r} in manifest")
    if len(out) != expected:
        raise CorruptBlobError(blob_hash, f"decoded {len(out)} bytes, expected {expected}")
    return out


def _decompress(fetch: Callable[[str], bytes], blob_hash: str, expected: int, coding: str = "zstd") -> bytes | memoryview:
    return decompress_segment(fetch(blob_hash), blob_hash, expected, coding)


def segment_codings(manifest: Mapping) -> list[str]:
    """Per segment: "zstd", "raw", "bits7", "pack4" or "pack2" (manifests written before codings existed
    are all zstd)."""
    return list(manifest.get("codings") or ["zstd"] * len(manifest["segments"]))


def stored_geometry(manifest: Mapping, nbytes: int) -> tuple[str, int, int, Layout]:
    """(stored dtype, element count, stored itemsize, layout) of a format-2 manifest."""
    dtype = manifest["dtype"]
    if dtype not in DTYPE_SIZES:
        raise UnknownFormatError(f"manifest names unsupported dtype {dtype!r}")
    n = nbytes // DTYPE_SIZES[dtype]
    lossy = manifest.get("lossy")
    stored_dtype = lossy["stored_dtype"] if lossy else dtype
    itemsize = DTYPE_SIZES[stored_dtype]
    if manifest.get("packing", "fields") == PACKING_BYTECLASS:
        return stored_dtype, n, itemsize, ()
    return stored_dtype, n, itemsize, check_layout(manifest["layout"], itemsize)


def segment_lengths(manifest: Mapping, nbytes: int, fetch: Callable[[str], bytes]) -> list[int]:
    """The decoded length of every segment of a format-2 manifest (for tools that read segments
    one by one; byte-class lengths follow from the counts, so the first segment is fetched)."""
    _, n, itemsize, layout = stored_geometry(manifest, nbytes)
    if layout:
        return [segment_length(n, w) for _, w in layout]
    first = manifest["segments"][0]
    counts = _decompress(fetch, first, n, segment_codings(manifest)[0])
    return [n] + expected_lengths(np.frombuffer(counts, dtype=np.uint8), itemsize)


def read_segments(manifest: Mapping, fetch: Callable[[str], bytes], n: int, layout: Layout,
                  k: Optional[int] = None) -> list[bytes]:
    """Decompressed bytes of the first ``k`` segments (all when k is None)."""
    hashes = list(manifest["segments"])[: k if k is not None else None]
    expected = [segment_length(n, w) for _, w in layout][: len(hashes)]
    jobs = list(zip(hashes, expected, segment_codings(manifest)))
    if len(hashes) > 1 and sum(expected) >= _PARALLEL_DECODE_BYTES:
        return list(_decode_pool().map(lambda job: _decompress(fetch, *job), jobs))
    return [_decompress(fetch, *job) for job in jobs]


def decode_segmented(manifest: Mapping, fetch: Callable[[str], bytes], nbytes: int, *,
                     base: Optional[Callable[[str], bytes]] = None,
                     out: Optional[memoryview] = None) -> bytes | bytearray | memoryview:
    """A format-2 tensor's raw bytes; into ``out`` (returned) when given and the tensor is lossless."""
    stored_dtype, n, itemsize, layout = stored_geometry(manifest, nbytes)
    packing = manifest.get("packing", "fields")
    lossy, delta = manifest.get("lossy"), manifest.get("delta")
    # the result itself, written in place by the join and the undone delta: no copy at the end
    buffer = None
    if not lossy:
        buffer = out if out is not None and len(out) == n * itemsize else unset_bytearray(n * itemsize)
    out = np.frombuffer(buffer, dtype=UINT_OF_SIZE[itemsize]) if buffer is not None else None
    if packing == PACKING_BYTECLASS:
        words = _read_byteclass(manifest, fetch, n, itemsize, out)
    elif packing != "fields":
        raise UnknownFormatError(f"unknown segment packing {packing!r} in manifest")
    else:
        if len(manifest["segments"]) != len(layout):
            raise DamagedEncodingError("manifest lists a different number of segments than its layout has fields")
        words = None
        if buffer is not None and kernels.LIB is not None:
            words = _join_stored(manifest, fetch, n, layout, np.frombuffer(buffer, dtype=UINT_OF_SIZE[itemsize]))
        if words is None:
            words = join_fields(read_segments(manifest, fetch, n, layout), layout, n, itemsize, out=buffer)
    if delta:
        if base is None:
            raise CodecError("this tensor is stored as a delta; pass base= (a callback returning the "
                             f"base tensor {delta['base'][:16]}'s raw bytes) to decode it")
        base_words = _words(base(delta["base"]), itemsize)
        if base_words.shape != words.shape:
            raise DamagedEncodingError("delta base has a different size than the delta; the base tensor "
                                       "named in the manifest is wrong or corrupt")
        if delta["op"] not in DELTA_OPS:
            raise UnknownFormatError(f"unknown delta op {delta['op']!r} in manifest")
        if buffer is not None and kernels.LIB is not None and kernels.aligned(base_words) and kernels.aligned(out):
            kernels.undo_delta(delta["op"], out, base_words)   # in place, one pass in C
        else:
            words = undo_delta(delta["op"], words, base_words)
            if buffer is not None:
                out[:] = words
    if lossy:
        return _undo_lossy(words, lossy, manifest["dtype"], fetch)
    return buffer


def _join_stored(manifest: Mapping, fetch: Callable[[str], bytes], n: int, layout: Layout,
                 words: np.ndarray) -> Optional[np.ndarray]:
    """``join_fields(read_segments(...))`` in one pass of the kernels (``kernels.join_sources``): a
    packed plane's codes and a bits7 field are unpacked a block at a time inside the join, so the
    unpacked planes never exist whole. On one 23 MB bfloat16 tensor (pack4 exponents, raw signs, bits7
    mantissas) decoded again and again by one thread it is a wash (5.4 ms against 1.45 + 0.66 + 3.4 for
    unpacking, bits7 and the join: the planes stay in cache); in a cold checkout of the 1.16 GB
    sharded bfloat16 checkpoint of benchmarks/streaming.py, the two alternated six times in one
    process, it ran at 1,505-1,772 against 1,014-1,495 MB/s, system time 0.14-0.24 against
    0.20-0.53 CPU-s/GB: no plane buffers faulted in fresh per tensor, no planes through memory
    while four threads share the cache.

    Returns None (the caller decodes the segments one by one, which names the damage exactly as
    before) where the words are not aligned for the kernels or a segment is damaged; a packed
    plane whose codes name another number of escapes than it stores is reported here, as
    decode_packed reports it."""
    if not kernels.aligned(words):
        return None
    jobs = list(zip(manifest["segments"], [w for _, w in layout], segment_codings(manifest)))

    def source(job) -> kernels.FieldSource:
        blob_hash, width, coding = job
        if width != 1 and coding in PACKED_CODINGS:   # one code per element: unpacked in the join
            lo, escapes, codes = packed_codes(fetch(blob_hash), PACKED_CODINGS[coding], n, blob_hash)
            return kernels.FieldSource(kernels.SOURCE_PACKED, codes, PACKED_CODINGS[coding], lo, escapes)
        if width != 1 and coding == BITS7:
            blob = fetch(blob_hash)
            check_bits7_length(blob, n, blob_hash)
            return kernels.FieldSource(kernels.SOURCE_BITS7, blob)
        return kernels.FieldSource(kernels.SOURCE_FIELD, _decompress(fetch, blob_hash, segment_length(n, width), coding))

    try:
        if len(jobs) > 1 and n * words.itemsize >= _PARALLEL_DECODE_BYTES:
            sources = list(_decode_pool().map(source, jobs))
        else:
            sources = [source(job) for job in jobs]
    except StorageError:
        return None
    found = kernels.join_sources(sources, layout, n, words)
    if found is None:   # a bits7 field with a stray bit
        return None
    for (blob_hash, _, _), src, k in zip(jobs, sources, found):
        if src.kind == kernels.SOURCE_PACKED and k != len(src.escapes):
            raise CorruptBlobError(blob_hash, escape_mismatch(k, len(src.escapes)))
    return words


def _read_byteclass(manifest: Mapping, fetch: Callable[[str], bytes], n: int, itemsize: int,
                    out: Optional[np.ndarray] = None) -> np.ndarray:
    hashes = list(manifest["segments"])
    if len(hashes) != 1 + 2 * itemsize:
        raise DamagedEncodingError("byte-class manifest has the wrong number of segments")
    codings = segment_codings(manifest)
    counts = _decompress(fetch, hashes[0], n, codings[0])
    counts_arr = np.frombuffer(counts, dtype=np.uint8)
    if n and int(counts_arr.max()) > itemsize:
        raise CorruptBlobError(hashes[0], "byte-class counts exceed the element size")
    rest = [_decompress(fetch, h, e, c)
            for h, e, c in zip(hashes[1:], expected_lengths(counts_arr, itemsize), codings[1:])]
    return join_byteclass([counts] + rest, n, itemsize, out)


def _undo_lossy(words: np.ndarray, lossy: Mapping, dtype: str, fetch: Callable[[str], bytes]) -> bytes:
    kind = lossy["kind"]
    if kind == "float16":
        values = words.view("<f2").astype(np.float64)
    elif kind == "bfloat16":
        values = to_float64(words.tobytes(), "bfloat16")
    elif kind == "kbit":
        table = np.frombuffer(fetch(lossy["table"]), dtype="<f8")
        if table.size != 1 << int(lossy["bits"]) or (words.size and int(words.max()) >= table.size):
            raise CorruptBlobError(lossy["table"], "quantization table does not match the indices")
        values = table[words]
    else:
        raise UnknownFormatError(f"unknown lossy encoding {kind!r} in manifest")
    return from_float64(values, dtype)


def segmented_blobs(manifest: Mapping) -> list[str]:
    out = list(manifest.get("segments", []))
    lossy = manifest.get("lossy")
    if lossy and lossy.get("table"):
        out.append(lossy["table"])
    return out


class SegmentedCodec:
    """Format 2: exponent-first bit-field segments, optional delta, zstd per segment."""

    id: ClassVar[str] = CODEC_ID
    config_type: ClassVar[type] = SegmentedConfig

    def encode(self, raw, dtype, shape, config: SegmentedConfig, *, base_raw=None, base_hash=None, scratch=None):
        itemsize = DTYPE_SIZES[dtype]
        result = encode_segmented(raw, dtype, len(raw) // itemsize if itemsize else 0, itemsize,
                                  config=config, base_raw=base_raw, base_hash=base_hash, scratch=scratch)
        return result.manifest, result.blobs

    def decode(self, manifest, fetch, nbytes, *, base=None, out=None):
        return decode_segmented(manifest, fetch, nbytes, base=base, out=out)

    def blobs(self, manifest):
        return segmented_blobs(manifest)


register_codec(SegmentedCodec())
