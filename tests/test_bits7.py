"""Bare 7-bit fields (storage/bits7.py, segment coding bits7)."""
from __future__ import annotations

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings, strategies as st

from modelhub.storage.bits7 import decode_bits7, encode_bits7, packed_length
from modelhub.storage.errors import CodecError, CorruptBlobError
from modelhub.storage.segmented import SegmentedConfig, decompress_segment, segment_codings
from modelhub.storage.tensors import decode_tensor, encode_tensor


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=5000))
def test_any_field_round_trips_bit_exactly_in_seven_bits_per_element(data):
    field = (np.frombuffer(data, np.uint8) & 0x7F).tobytes()   # lengths of every residue mod 8
    blob = encode_bits7(field)
    assert len(blob) == packed_length(len(field)) == (7 * len(field) + 7) // 8
    assert decode_bits7(blob, len(field), "h") == field


def test_the_tail_bit_planes_fill_the_top_bits_of_the_first_bytes():
    """17 elements: t = 2 tail elements (15 and 16); bytes 0-13 carry their 7 bit planes,
    byte 14 is the leftover element, its top bit clear."""
    field = bytes(range(1, 16)) + bytes([0b1010101, 0b0000011])
    blob = encode_bits7(field)
    assert len(blob) == 15
    # byte b*t + i holds bit b of tail element i in its top bit (t = 2): tail = 0b1010101, 0b0000011
    tops = [byte >> 7 for byte in blob]
    expected = [0] * 15
    for b in range(7):
        expected[2 * b] = (0b1010101 >> b) & 1
        expected[2 * b + 1] = (0b0000011 >> b) & 1
    assert tops == expected
    assert bytes(byte & 0x7F for byte in blob) == field[:15]


def test_damaged_blobs_are_caught_with_their_name_and_wide_fields_refused():
    field = bytes(np.random.default_rng(3).integers(0, 128, 1003, dtype=np.uint8))
    blob = bytes(encode_bits7(field))
    with pytest.raises(CorruptBlobError, match=r"object bad is corrupt \(bits7 segment holds 877 bytes, expected 878"):
        decode_bits7(blob[:-1], len(field), "bad")
    damaged = blob[:-1] + bytes([blob[-1] | 0x80])   # a leftover byte past the tail planes
    with pytest.raises(CorruptBlobError, match="bits7 segment has bits set past its tail planes"):
        decode_bits7(damaged, len(field), "bad")
    with pytest.raises(CodecError, match="bits7 holds 7-bit fields; this segment has bytes of 128 or more"):
        encode_bits7(field[:10] + b"\x80")


def _weights(dtype: str, n: int, seed: int) -> bytes:
    w = (np.random.default_rng(seed).standard_normal(n) * 0.02).astype("<f4")
    return w.tobytes() if dtype == "float32" else (w.view("<u4") >> np.uint32(16)).astype("<u2").tobytes()


@pytest.mark.parametrize("strategy", ["level", "auto"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_commits_and_the_archive_store_noisy_top_mantissa_bits_as_bits7_smaller_than_zstd(dtype, strategy):
    raw = _weights(dtype, 200_000, 1)
    enc = encode_tensor(raw, dtype, [200_000], config=SegmentedConfig(strategy=strategy, level=1))
    codings = segment_codings(enc.manifest)
    top = [k for k, (_, w) in enumerate(enc.manifest["layout"]) if w == 7]
    assert len(top) == 1 and codings[top[0]] == "bits7"
    store = dict(zip(enc.manifest["segments"], enc.blobs))
    assert decode_tensor(enc.manifest, store.__getitem__, len(raw)) == raw
    field = decompress_segment(enc.blobs[top[0]], enc.manifest["segments"][top[0]], 200_000, "bits7")
    assert len(enc.blobs[top[0]]) < len(zstandard.ZstdCompressor(level=19).compress(field))


def test_a_skewed_seven_bit_field_stays_with_zstd():
    """bfloat16 weights that are multiples of small powers of two: the top mantissa bits take
    few values, far from noise at 7 bits, so zstd (much smaller there) keeps them."""
    w = (np.random.default_rng(2).integers(-8, 8, 50_000) / 16).astype("<f4")
    raw = (w.view("<u4") >> np.uint32(16)).astype("<u2").tobytes()
    for strategy in ("level", "auto"):
        enc = encode_tensor(raw, "bfloat16", [50_000], config=SegmentedConfig(strategy=strategy, level=1))
        assert segment_codings(enc.manifest)[2] in ("zstd", "pack4", "pack2")


@pytest.mark.parametrize("with_kernels", [True, False])
@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=3000))
def test_a_field_encoded_in_place_is_the_blob_encoded_into_a_new_buffer(with_kernels, data):
    """The commit's fast path writes the blob over its own field (the tail it reads lies past the blob)."""
    from modelhub.storage import kernels

    field = np.frombuffer(data, np.uint8) & 0x7F
    expected = bytes(encode_bits7(field.tobytes()))
    lib = kernels.LIB
    kernels.LIB = lib if with_kernels else None
    try:
        work = field.copy()
        blob = encode_bits7(work, in_place=True)
    finally:
        kernels.LIB = lib
    assert bytes(blob) == expected
    if len(field):
        assert np.frombuffer(blob, np.uint8).ctypes.data == work.ctypes.data   # a view of the field, no copy
    assert decode_bits7(bytes(blob), len(field), "h") == field.tobytes()


@pytest.mark.parametrize("with_kernels", [True, False])
def test_a_wide_field_is_refused_in_place_and_left_as_it_was(with_kernels):
    from modelhub.storage import kernels

    field = np.random.default_rng(5).integers(0, 128, 1000, dtype=np.uint8)
    field[999] = 200
    before = field.copy()
    lib = kernels.LIB
    kernels.LIB = lib if with_kernels else None
    try:
        with pytest.raises(CodecError, match="bits7 holds 7-bit fields; this segment has bytes of 128 or more"):
            encode_bits7(field, in_place=True)
        with pytest.raises(CodecError, match=r"encode_bits7\(in_place=True\) needs a writable field"):
            encode_bits7(bytes(before & 0x7F), in_place=True)
    finally:
        kernels.LIB = lib
    assert np.array_equal(field, before)
