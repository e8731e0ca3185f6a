"""The context coder (storage/context_coding.py, formats 3 and 4): bit-exact round trips, damage, golden files.

tests/golden/context/ holds, per case, the raw tensor, its parent, the manifest and the blob
written when the fixture was made (format 4); tests/golden/context/format3/ the same cases as
the format-3 release wrote them. Every checked-in blob must still decode bit-exactly, and
encoding the same tensor today must give the same manifest (but for the blob's hash and size)
and the same *decoded* streams (zstd's compressed bytes may differ between releases).
Regenerate deliberately with: python tests/test_context_coding.py --regen
"""
from __future__ import annotations

import functools
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from modelhub.storage.context_coding import (CODEC_ID, CODING_RANS, CODING_RAW, CODING_ZSTD, FORMAT, MAGIC, MAGIC_V1, ContextCodec,
                                             ContextConfig, _varint, blob_codings, blob_streams, decode_context,
                                             _match_probe, _optimal_parse, _pack, encode_context, merge_bins,
                                             parent_exponent)
from modelhub.storage import kernels
from modelhub.storage.errors import CodecError, CorruptBlobError, DamagedEncodingError, UnknownFormatError
from modelhub.storage.objects import content_hash, name_matches

GOLDEN = Path(__file__).parent / "golden" / "context"
GOLDEN_V1 = GOLDEN / "format3"      # written before 2026-12 (DCX1 container): decoded, never re-encoded
NUMPY_OF = {"float16": "<f2", "float32": "<f4", "float64": "<f8"}
SMALL = ContextConfig(min_group=16, min_elements=1)


def as_bytes(values: np.ndarray, dtype: str) -> bytes:
    """Raw little-endian bytes of float64 ``values`` in ``dtype`` (bfloat16: float32's top half, truncated)."""
    if dtype == "bfloat16":
        return (values.astype("<f4").view("<u4") >> np.uint32(16)).astype("<u2").tobytes()
    return values.astype(NUMPY_OF[dtype]).tobytes()


def trained_pair(dtype: str, n: int, seed: int, step: float = 1e-3) -> tuple[bytes, bytes]:
    """A parent and an Adam-like update of it: most weights move by about ``step``."""
    rng = np.random.default_rng(seed)
    parent = rng.standard_normal(n) * 0.05
    child = parent + rng.standard_normal(n) * step * (rng.random(n) < 0.9)
    return as_bytes(child, dtype), as_bytes(parent, dtype)


def roundtrip(raw: bytes, base: bytes, dtype: str, config: ContextConfig = SMALL):
    enc = encode_context(raw, dtype, [len(raw)], base_raw=base, base_hash="b" * 64, config=config)
    assert enc is not None
    blobs = {content_hash(b): b for b in enc.blobs}
    out = decode_context(enc.manifest, blobs.__getitem__, len(raw), base=lambda h: base)
    assert out == raw
    return enc


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("op", ["osub", "xor"])
def test_trained_update_round_trips_bit_exactly(dtype, op):
    raw, base = trained_pair(dtype, 5000, seed=1)
    enc = roundtrip(raw, base, dtype, ContextConfig(ops=(op,)))
    assert enc.manifest["delta"] == {"base": "b" * 64, "op": op}
    assert enc.manifest["format"] == FORMAT and enc.manifest["codec"] == CODEC_ID


WORD = {"float16": "<u2", "bfloat16": "<u2", "float32": "<u4", "float64": "<u8"}


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from(sorted(WORD)), data=st.data())
def test_any_bit_patterns_round_trip(dtype, data):
    """Arbitrary words (NaNs with payloads, infinities, -0.0, subnormals), parents and group sizes."""
    itemsize = np.dtype(WORD[dtype]).itemsize
    n = data.draw(st.integers(1, 300))
    raw = data.draw(st.binary(min_size=n * itemsize, max_size=n * itemsize))
    mode = data.draw(st.sampled_from(["random", "near", "equal"]))
    if mode == "random":
        base = data.draw(st.binary(min_size=n * itemsize, max_size=n * itemsize))
    else:
        words = np.frombuffer(raw, WORD[dtype]).copy()
        if mode == "near" and n:
            flips = np.frombuffer(data.draw(st.binary(min_size=n, max_size=n)), np.uint8) % 8
            words ^= flips.astype(words.dtype)
        base = words.tobytes()
    config = ContextConfig(min_group=data.draw(st.integers(1, 64)), min_elements=1)
    roundtrip(raw, base, dtype, config)


def test_special_values_round_trip():
    values = np.array([np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, -1e-45, 3.4e38, -1.5] * 50)
    for dtype in ("float16", "bfloat16", "float32", "float64"):
        raw = as_bytes(values, dtype)
        base = as_bytes(values[::-1].copy(), dtype)
        roundtrip(raw, base, dtype)


@pytest.mark.skipif(kernels.LIB is None, reason="the compiled decoder writes into the caller's buffer; numpy's makes its own")
def test_decoding_into_a_buffer_writes_there_and_an_unaligned_one_gets_a_copy():
    """A checkout hands the decoder the buffer it writes out: the words go there (the buffer itself
    comes back, nothing is copied). A buffer not aligned to the words (a tensor at an odd offset in
    its file) gets the same bytes through a buffer of the decoder's own."""
    raw, base = trained_pair("float32", 5000, seed=2)
    enc = encode_context(raw, "float32", [5000], base_raw=base, base_hash="b" * 64, config=SMALL)
    blobs = {content_hash(b): b for b in enc.blobs}
    area = np.zeros(len(raw) + 8, dtype=np.uint8)
    aligned = memoryview(area)[:len(raw)]
    got = decode_context(enc.manifest, blobs.__getitem__, len(raw), base=lambda h: base, out=aligned)
    assert got is aligned and area[:len(raw)].tobytes() == raw
    odd = memoryview(area)[1:len(raw) + 1]
    got = decode_context(enc.manifest, blobs.__getitem__, len(raw), base=lambda h: base, out=odd)
    assert got is not odd and bytes(got) == raw
    for wrong in (bytearray(len(raw) - 4), bytes(len(raw))):   # never written past its end, nor read-only
        with pytest.raises(CodecError, match=f"out must be {len(raw)} writable bytes"):
            decode_context(enc.manifest, blobs.__getitem__, len(raw), base=lambda h: base, out=wrong)


def test_equal_parent_costs_almost_nothing():
    raw, _ = trained_pair("float32", 20000, seed=2)
    enc = roundtrip(raw, raw, "float32", ContextConfig())
    assert enc.nbytes < 200


def test_smaller_than_min_elements_is_not_encoded():
    raw, base = trained_pair("float32", 100, seed=3)
    assert encode_context(raw, "float32", [100], base_raw=base, base_hash="b" * 64,
                          config=ContextConfig(min_elements=101)) is None


def test_context_beats_order0_when_update_size_follows_parent_magnitude():
    """Weights of very different magnitudes, the same absolute step: the parent's exponent predicts the delta."""
    raw, base = trained_pair("float32", 60000, seed=4)
    one_group = encode_context(raw, "float32", [60000], base_raw=base, base_hash="b" * 64,
                               config=ContextConfig(min_group=10 ** 9))
    grouped = encode_context(raw, "float32", [60000], base_raw=base, base_hash="b" * 64)
    assert grouped.nbytes < one_group.nbytes


def test_parent_exponent_is_the_dtypes_exponent_field():
    one = {"float16": 0x3C00, "bfloat16": 0x3F80, "float32": 0x3F800000, "float64": 0x3FF0000000000000}
    bias = {"float16": 15, "bfloat16": 127, "float32": 127, "float64": 1023}
    for dtype, word in one.items():
        words = np.array([word], dtype=WORD[dtype])
        assert int(parent_exponent(words, dtype)[0]) == bias[dtype]


def test_merge_bins_groups_in_order_and_folds_a_small_tail():
    hist = np.array([0, 5, 0, 3, 10, 1, 0, 2])
    labels = merge_bins(hist, 8)
    assert [int(labels[b]) for b in np.flatnonzero(hist)] == [0, 0, 1, 1, 1]
    assert [int(v) for v in merge_bins(np.array([3, 0, 2]), 100)[[0, 2]]] == [0, 0]


def _merge_bins_by_the_definition(hist, min_group):
    """merge_bins as its docstring defines it, one bin at a time (the codec searches per group)."""
    labels = np.zeros(len(hist), dtype=np.int64)
    label, filled, last_full = 0, 0, -1
    for b in np.flatnonzero(hist):
        labels[b] = label
        filled += int(hist[b])
        if filled >= min_group:
            last_full, label, filled = label, label + 1, 0
    if filled and last_full >= 0:
        labels[(labels == label) & (hist > 0)] = last_full
    return labels


@settings(max_examples=500, deadline=None)
@given(hist=st.lists(st.integers(0, 50), max_size=40), min_group=st.integers(1, 120))
def test_merge_bins_matches_its_definition(hist, min_group):
    hist = np.array(hist, dtype=np.int64)
    expected = _merge_bins_by_the_definition(hist, min_group)
    assert merge_bins(hist, min_group).tolist() == expected.tolist()
    if kernels.LIB is not None:     # the decoder's compiled merge: the same labels, and each group's size
        labels, sizes = kernels.context_groups(hist, min_group)
        assert labels.tolist() == expected.tolist()
        assert sizes.tolist() == [int(hist[expected == g].sum()) for g in range(len(sizes))]
        assert sizes.tolist() == [s for s in np.bincount(expected, weights=hist, minlength=1).astype(int).tolist() if s]


def test_merge_bins_refuses_a_min_group_below_one():
    """With min_group 0 no group ever closes: the numpy merge looped forever."""
    with pytest.raises(ValueError, match="min_group must be at least 1, not 0"):
        merge_bins(np.array([5, 0, 3]), 0)
    if kernels.LIB is not None:
        with pytest.raises(ValueError, match="refused min_group -1"):
            kernels.context_groups(np.array([5, 0, 3]), -1)


def test_rejects_integer_dtypes_and_mismatched_bases():
    with pytest.raises(CodecError, match="takes float16, bfloat16, float32 or float64"):
        encode_context(b"\0" * 8, "int32", [2], base_raw=b"\0" * 8, base_hash="b" * 64)
    with pytest.raises(CodecError, match="different size"):
        encode_context(b"\0" * 8, "float32", [2], base_raw=b"\0" * 4, base_hash="b" * 64)
    with pytest.raises(CodecError, match="unknown delta ops"):
        ContextConfig(ops=("sub",))


def test_decode_needs_the_base():
    raw, base = trained_pair("float32", 600, seed=5)
    enc = roundtrip(raw, base, "float32")
    with pytest.raises(CodecError, match="stored as a delta; pass base="):
        decode_context(enc.manifest, {content_hash(enc.blobs[0]): enc.blobs[0]}.__getitem__, len(raw))


@pytest.mark.parametrize("change, error, message", [
    ({"context": "neighbours"}, UnknownFormatError, "unknown context model"),
    ({"delta": {"base": "b" * 64, "op": "sub"}}, UnknownFormatError, "unknown delta op"),
    ({"dtype": "int32"}, DamagedEncodingError, "never writes"),
    # with min_group 0 the old decoder merged bins forever: a damaged or hostile manifest hung a checkout
    ({"min_group": 0}, DamagedEncodingError, "min_group 0; the coder writes a whole number of at least 1"),
    ({"min_group": -3}, DamagedEncodingError, "min_group -3"),
    ({"min_group": "1024"}, DamagedEncodingError, "min_group '1024'"),
    ({"min_group": None}, DamagedEncodingError, "min_group None"),
])
def test_manifests_it_cannot_read_say_why(change, error, message):
    raw, base = trained_pair("float32", 600, seed=5)
    enc = roundtrip(raw, base, "float32")
    with pytest.raises(error, match=message):
        decode_context({**enc.manifest, **change}, {content_hash(enc.blobs[0]): enc.blobs[0]}.__getitem__, len(raw),
                       base=lambda h: base)


@pytest.mark.parametrize("min_group", [2 ** 40, 2 ** 63, 10 ** 30])
def test_a_min_group_above_the_element_count_decodes_as_one_group(min_group):
    """The coder takes any min_group >= 1; one above the element count (beyond int64 too) makes one group."""
    raw, base = trained_pair("float32", 6000, seed=5)
    enc = encode_context(raw, "float32", [6000], base_raw=base, base_hash="b" * 64,
                         config=ContextConfig(min_group=min_group, min_elements=1))
    assert enc.manifest["min_group"] == min_group
    assert decode_context(enc.manifest, lambda h: enc.blobs[0], len(raw), base=lambda h: base) == raw


def test_a_base_of_another_size_is_damage():
    raw, base = trained_pair("float32", 600, seed=5)
    enc = roundtrip(raw, base, "float32")
    with pytest.raises(DamagedEncodingError, match="different size"):
        decode_context(enc.manifest, {content_hash(enc.blobs[0]): enc.blobs[0]}.__getitem__, len(raw),
                       base=lambda h: base[:-4])


def test_codec_contract_refuses_whole_tensors():
    with pytest.raises(CodecError, match="stores deltas only"):
        ContextCodec().encode(b"\0" * 8, "float32", [2], ContextConfig())


def _decode_blob(enc, blob: bytes, raw: bytes, base: bytes) -> bytes:
    return decode_context(enc.manifest, lambda h: blob, len(raw), base=lambda h: base)


def _with_first_length(blob: bytes, change: int) -> bytes:
    """A DCX2 blob whose first stream's recorded length is off by ``change`` (count < 128: one byte)."""
    entry, end = blob[5], 6
    value = entry & 0x7F
    shift = 7
    while entry & 0x80:
        entry = blob[end]
        value |= (entry & 0x7F) << shift
        shift, end = shift + 7, end + 1
    return blob[:5] + _varint(value + (change << 2)) + blob[end:]


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:3], "shorter than its header"),
    (lambda b: b"XXXX" + b[4:], "not a context-coded blob"),
    (lambda b: b + b"\0", "trailing bytes"),
    (lambda b: _with_first_length(b, -1), "stream|trailing"),
    (lambda b: _with_first_length(b, +1), "stream|trailing"),
    (lambda b: b[:4] + _varint(10 ** 6) + b[5:], "lists more streams"),
    (lambda b: b[:6], "cut short|lists more streams"),
    (lambda b: b[:4] + b[4:5] + b"\xff" * 3, "cut short|lists more streams"),
])
def test_damaged_blobs_raise_corrupt_blob_error(damage, message):
    raw, base = trained_pair("float32", 3000, seed=6)
    enc = roundtrip(raw, base, "float32")
    assert enc.blobs[0][:4] == MAGIC and enc.blobs[0][4] < 0x80
    with pytest.raises(CorruptBlobError, match=message):
        _decode_blob(enc, damage(enc.blobs[0]), raw, base)



def _table_either_way(blob: bytes, compiled: bool):
    """(offsets, lengths, codings) or the error message, from the kernel or the Python reader."""
    from modelhub.storage import context_coding

    try:
        if compiled:
            return context_coding._unpack_container(blob, "h")
        return context_coding._Container(blob[:4], memoryview(blob), *context_coding._stream_table(memoryview(blob), blob[:4], "h"))
    except CorruptBlobError as exc:
        return str(exc)


def _as_tuple(unpacked):
    return unpacked if isinstance(unpacked, str) else (unpacked.offsets, unpacked.lengths, unpacked.codings)


@functools.lru_cache(maxsize=None)
def _coded_blob(seed: int) -> bytes:
    raw, base = trained_pair("float32", 2000, seed=seed)
    return roundtrip(raw, base, "float32").blobs[0]


@pytest.mark.skipif(kernels.LIB is None, reason="the compiled kernels are not built")
@settings(max_examples=500, deadline=None)
@given(st.data())
def test_the_compiled_stream_table_reads_any_blob_as_the_python_reader_does(data):
    """mh_ctx_stream_table against the Python reader on whole, cut, extended and rewritten tables, and on
    varints longer than 64 bits (Python's ints are unbounded; the kernel must refuse them alike)."""
    blob = bytearray(_coded_blob(data.draw(st.integers(0, 3))))
    damage = data.draw(st.sampled_from(["none", "flip", "cut", "extend", "table", "huge"]))
    if damage == "flip":
        blob[data.draw(st.integers(4, min(len(blob) - 1, 60)))] ^= data.draw(st.integers(1, 255))
    elif damage == "cut":
        del blob[data.draw(st.integers(4, len(blob) - 1)):]
    elif damage == "extend":
        blob += data.draw(st.binary(min_size=1, max_size=4))
    elif damage == "table":
        blob[4:] = data.draw(st.binary(max_size=40)) + blob[4:]
    elif damage == "huge":     # a 10-byte varint whose last byte carries bits past 2^64
        at = data.draw(st.sampled_from([4, 5]))
        blob[at:at] = b"\x80" * 9 + bytes([data.draw(st.integers(0, 127))])
    assert _as_tuple(_table_either_way(bytes(blob), True)) == _as_tuple(_table_either_way(bytes(blob), False))


@pytest.mark.skipif(kernels.LIB is None, reason="the compiled kernels are not built")
@pytest.mark.parametrize("count, verdict", [(1 << 16, None), ((1 << 16) + 1, "more streams than the coder writes")])
def test_a_blob_listing_more_streams_than_the_coder_writes_is_refused_before_any_table_is_sized(count, verdict):
    """A damaged (or hostile) count is refused above MAX_STREAMS by both readers, even where the blob
    has the bytes for that many empty streams: a table sized by it would take 24 bytes per blob byte."""
    from modelhub.storage.context_coding import MAX_STREAMS

    assert MAX_STREAMS == 1 << 16
    blob = MAGIC + _varint(count) + bytes(count)          # every stream raw and empty
    for compiled in (True, False):
        got = _table_either_way(blob, compiled)
        if verdict is None:
            assert not isinstance(got, str) and len(got.offsets) == count
        else:
            assert isinstance(got, str) and verdict in got, got

def _format3_blob(name: str) -> tuple[dict, bytes, bytes, bytes]:
    d = GOLDEN_V1 / name
    manifest = json.loads((d / "manifest.json").read_text())
    (h,) = manifest["segments"]
    return manifest, (d / f"{h}.blob").read_bytes(), (d / "raw.bin").read_bytes(), (d / "base.bin").read_bytes()


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:6], "shorter than its header"),
    (lambda b: b + b"\0", "trailing bytes"),
    (lambda b: b[:4] + struct.pack("<I", struct.unpack_from("<I", b, 4)[0] - 1) + b[8:], "stream|trailing"),
    (lambda b: b[:4] + struct.pack("<I", 10 ** 6) + b[8:], "lists more streams"),
    (lambda b: b[:8] + struct.pack("<IB", 5, 2) + b[13:], "stream 0 of a context-coded blob is damaged"),
])
def test_damaged_format3_blobs_raise_corrupt_blob_error(damage, message):
    """DCX1 (format 3, written before rANS streams) is still read, and still checked: coding 2 is not one of its codings."""
    manifest, blob, raw, base = _format3_blob("float32_osub")
    assert blob[:4] == MAGIC_V1
    with pytest.raises(CorruptBlobError, match=message):
        decode_context(manifest, lambda h: damage(blob), len(raw), base=lambda h: base)


def test_streams_are_stored_with_the_smallest_coding():
    """A trained update of 60k float32 elements: its skewed lead and counts streams are shorter as
    rANS than as zstd frames (no frame, fractional bits), its low bytes are noise and stay raw."""
    raw, base = trained_pair("float32", 60000, seed=9)
    enc = roundtrip(raw, base, "float32", ContextConfig())
    codings = blob_codings(enc.blobs[0])
    assert CODING_RANS in codings and CODING_RAW in codings
    zstd_only = ContextConfig()
    with no_rans():
        plain = roundtrip(raw, base, "float32", zstd_only)
    assert CODING_RANS not in blob_codings(plain.blobs[0])
    assert enc.nbytes < plain.nbytes


class no_rans:
    """Encode as a build without the compiled kernels does: raw and zstd streams only."""

    def __enter__(self):
        import modelhub.storage.rans as rans
        self.rans, self.saved = rans, rans.encode
        rans.encode = lambda data, hist=None: None

    def __exit__(self, *exc):
        self.rans.encode = self.saved


class CountingCompressor:
    """A zstd compressor that counts its calls."""

    def __init__(self, real):
        self.real, self.calls = real, 0

    def compress(self, data):
        self.calls += 1
        return self.real.compress(data)


def test_the_optimal_parser_is_skipped_where_the_fast_parse_finds_no_repeats():
    """A skewed stream without repeats: the probe's frame is no smaller than the rANS stream, so
    the optimal parser (1-5 MB/s) never runs, and the stream is stored as it was without the probe."""
    data = np.random.default_rng(3).geometric(0.5, 200_000).clip(max=255).astype(np.uint8).tobytes()
    optimal = CountingCompressor(_optimal_parse())
    probed = _pack(data, optimal, False, _match_probe())
    assert optimal.calls == 0 and probed[1] == CODING_RANS
    assert _pack(data, _optimal_parse(), False) == probed


def test_the_optimal_parser_still_runs_where_a_stream_repeats():
    """The same kind of stream, tiled: the probe finds the repeats, the optimal parser runs and its
    frame is stored (far below what rANS, which has no matches, makes of it)."""
    tile = np.random.default_rng(3).geometric(0.3, 1000).clip(max=255).astype(np.uint8).tobytes()
    data = tile * 200
    optimal = CountingCompressor(_optimal_parse())
    coded, coding = _pack(data, optimal, False, _match_probe())
    assert optimal.calls == 1 and coding == CODING_ZSTD
    assert len(coded) < len(data) // 50


def _spy_segmented_compress(monkeypatch) -> list:
    import modelhub.storage.segmented as segmented

    calls, real = [], segmented._compress
    monkeypatch.setattr(segmented, "_compress", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_delta_best_skips_segmented_compression_where_the_context_coder_is_far_smaller(monkeypatch):
    """A bfloat16 update whose segmented estimate is ~1.2x the context-coded size: the segmented
    options are never compressed, and the result is what comparing both whole gives."""
    import modelhub.storage.tensors as tensors

    raw, base = trained_pair("bfloat16", 100_000, seed=4, step=1e-4)
    calls = _spy_segmented_compress(monkeypatch)
    best = tensors.encode_delta_best(raw, "bfloat16", [100_000], base_raw=base, base_hash="b" * 64)
    assert calls == [] and best.manifest["codec"] == CODEC_ID
    monkeypatch.setattr(tensors, "_SEGMENTED_ESTIMATE_SLACK", float("inf"))
    assert tensors.encode_delta_best(raw, "bfloat16", [100_000], base_raw=base, base_hash="b" * 64) == best
    assert calls


def test_delta_best_compresses_the_segmented_options_where_their_estimate_is_below_the_context_size(monkeypatch):
    """A float16 update as large as the weights: the parent's exponent tells the context coder little,
    the segmented estimate is below its size, so the segmented options are compressed, and the
    smaller of the two is kept."""
    import modelhub.storage.tensors as tensors

    rng = np.random.default_rng(5)
    parent = rng.standard_normal(100_000) * 0.05
    raw, base = as_bytes(parent + rng.standard_normal(100_000) * 0.05, "float16"), as_bytes(parent, "float16")
    calls = _spy_segmented_compress(monkeypatch)
    best = tensors.encode_delta_best(raw, "float16", [100_000], base_raw=base, base_hash="b" * 64)
    assert calls
    seg = tensors.encode_tensor(raw, "float16", [100_000], codec="segmented", base_raw=base, base_hash="b" * 64)
    ctx = encode_context(raw, "float16", [100_000], base_raw=base, base_hash="b" * 64)
    assert sum(len(b) for b in best.blobs) == min(sum(len(b) for b in seg.blobs), ctx.nbytes)


def test_a_wrong_base_is_caught_by_the_stream_sizes_or_decodes_to_other_bytes():
    raw, base = trained_pair("float32", 3000, seed=7)
    enc = roundtrip(raw, base, "float32")
    other = trained_pair("float32", 3000, seed=8)[1]
    try:
        out = _decode_blob(enc, enc.blobs[0], raw, other)
    except CorruptBlobError:
        return
    assert out != raw  # the repository's content hash check names it


# -- golden files -----------------------------------------------------------------------------

def golden_cases() -> dict:
    cases = {}
    for dtype in ("float16", "bfloat16", "float32", "float64"):
        raw, base = trained_pair(dtype, 700, seed=20240601)
        cases[f"{dtype}_osub"] = dict(raw=raw, base=base, dtype=dtype, config=ContextConfig(min_group=64, min_elements=1, ops=("osub",)))
    raw, base = trained_pair("float32", 700, seed=20240602)
    cases["float32_xor"] = dict(raw=raw, base=base, dtype="float32", config=ContextConfig(min_group=64, min_elements=1, ops=("xor",)))
    for dtype in ("bfloat16", "float32"):   # large enough that rANS streams win (format 4)
        raw, base = trained_pair(dtype, 8000, seed=20240603)
        cases[f"{dtype}_osub_rans"] = dict(raw=raw, base=base, dtype=dtype, config=ContextConfig(min_group=512, min_elements=1))
    return cases


def encode_golden(case):
    return encode_context(case["raw"], case["dtype"], [len(case["raw"])], base_raw=case["base"], base_hash="0" * 64,
                          config=case["config"])


def test_golden_files_cover_both_formats_and_every_coding():
    format3 = sorted(m.parent.name for m in GOLDEN_V1.glob("*/manifest.json"))
    assert format3 == ["bfloat16_osub", "float16_osub", "float32_osub", "float32_xor", "float64_osub"]
    codings = set()
    for name in golden_cases():
        (h,) = json.loads((GOLDEN / name / "manifest.json").read_text())["segments"]
        codings.update(blob_codings((GOLDEN / name / f"{h}.blob").read_bytes()))
    assert codings == {CODING_RAW, CODING_ZSTD, CODING_RANS}


def regenerate() -> None:
    for name, case in golden_cases().items():
        enc = encode_golden(case)
        d = GOLDEN / name
        d.mkdir(parents=True, exist_ok=True)
        for stale in d.glob("*.blob"):
            stale.unlink()
        (d / "raw.bin").write_bytes(case["raw"])
        (d / "base.bin").write_bytes(case["base"])
        (d / "manifest.json").write_text(json.dumps(enc.manifest, indent=1, sort_keys=True) + "\n")
        for blob in enc.blobs:
            (d / f"{content_hash(blob)}.blob").write_bytes(blob)


@pytest.mark.parametrize("name", sorted(str(m.parent.relative_to(GOLDEN)) for m in GOLDEN.rglob("manifest.json")))
def test_checked_in_blobs_decode_bit_exactly(name):
    d = GOLDEN / name
    manifest = json.loads((d / "manifest.json").read_text())
    raw, base = (d / "raw.bin").read_bytes(), (d / "base.bin").read_bytes()

    def fetch(h):
        data = (d / f"{h}.blob").read_bytes()
        assert name_matches(h, data)   # written with BLAKE2b-256 names: still verified
        return data

    assert decode_context(manifest, fetch, len(raw), base=lambda h: base) == raw


@pytest.mark.parametrize("name", sorted(golden_cases()))
def test_encoding_today_matches_the_golden_format(name):
    d = GOLDEN / name
    golden = json.loads((d / "manifest.json").read_text())
    case = golden_cases()[name]
    assert (d / "raw.bin").read_bytes() == case["raw"] and (d / "base.bin").read_bytes() == case["base"]
    enc = encode_golden(case)
    skip = {"segments", "sizes"}
    assert {k: v for k, v in enc.manifest.items() if k not in skip} == {k: v for k, v in golden.items() if k not in skip}
    (old_hash,) = golden["segments"]
    old_blob = (d / f"{old_hash}.blob").read_bytes()
    assert blob_streams(enc.manifest, enc.blobs[0], case["base"]) == blob_streams(golden, old_blob, case["base"])


if __name__ == "__main__" and "--regen" in sys.argv:
    regenerate()
