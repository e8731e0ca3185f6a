"""Packed byte planes (storage/planepack.py, segment codings pack4 and pack2)."""
from __future__ import annotations

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings, strategies as st

from modelhub.storage.errors import CorruptBlobError
from modelhub.storage.planepack import best_window, decode_packed, encode_packed
from modelhub.storage.segmented import SegmentedConfig, decompress_segment, segment_codings
from modelhub.storage.tensors import decode_tensor, encode_tensor

CCTX = zstandard.ZstdCompressor(level=1)


def packed(plane: bytes, bits: int) -> bytes:
    lo, _ = best_window(np.bincount(np.frombuffer(plane, np.uint8), minlength=256), bits)
    return encode_packed(plane, bits, lo, CCTX)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000), bits=st.sampled_from([2, 4]), spread=st.integers(1, 40),
       centre=st.integers(0, 255))
def test_any_plane_round_trips_bit_exactly(data, bits, spread, centre):
    """Windows that wrap past 255, planes of any length (padding codes), escapes or none."""
    plane = ((np.frombuffer(data, np.uint8).astype(np.int64) % spread + centre) % 256).astype(np.uint8).tobytes()
    assert decode_packed(packed(plane, bits), bits, len(plane), "h") == plane


def test_the_window_covers_the_most_elements_and_wraps_around_255():
    hist = np.zeros(256, np.int64)
    hist[[243, 248, 252, 0, 1]] = 5
    hist[100] = 12
    assert best_window(hist, 4) == (243, 25)   # 243..255, 0, 1: the fifteen values across the wrap
    lo, covered = best_window(hist, 2)         # three values: one crowded value beats 0 and 1
    assert covered == 12 and lo <= 100 <= lo + 2


def test_escapes_are_stored_in_element_order():
    plane = bytes([7, 8, 200, 7, 9, 1, 8]) * 3
    blob = encode_packed(plane, 2, 7, CCTX)   # window 7, 8, 9: 200 and 1 are escapes
    assert blob[9:15] == bytes([200, 1]) * 3
    assert decode_packed(blob, 2, len(plane), "h") == plane


def test_damaged_blobs_are_caught_with_their_name():
    plane = bytes(np.random.default_rng(1).integers(100, 110, 5000, dtype=np.uint8)) + b"\xff\x00"
    blob = packed(plane, 4)
    with pytest.raises(CorruptBlobError, match=r"object bad is corrupt \(packed plane is shorter than its header"):
        decode_packed(blob[:5], 4, len(plane), "bad")
    with pytest.raises(CorruptBlobError, match="names 9999 escapes for 5002 elements"):
        decode_packed(blob[:1] + (9999).to_bytes(8, "little") + blob[9:], 4, len(plane), "bad")
    with pytest.raises(CorruptBlobError, match="has 2 escape codes but stores 1 escapes"):
        decode_packed(blob[:1] + (1).to_bytes(8, "little") + blob[9:10] + blob[11:], 4, len(plane), "bad")
    with pytest.raises(CorruptBlobError, match="zstd"):
        decode_packed(blob[:11] + b"garbage" + blob[18:], 4, len(plane), "bad")
    with pytest.raises(CorruptBlobError, match="decoded to 2501 bytes, expected 2502"):
        decode_packed(blob, 4, len(plane) + 2, "bad")
    frame = CCTX.compress(bytes(2501))   # every code 0 where the header promises 2 escapes
    with pytest.raises(CorruptBlobError, match="has 0 escape codes but stores 2 escapes"):
        decode_packed(blob[:11] + frame, 4, len(plane), "bad")


def test_a_commit_packs_a_concentrated_exponent_plane_and_a_spread_one_not():
    rng = np.random.default_rng(3)
    narrow = (rng.standard_normal(50_000) * 0.02).astype("<f4")
    wide = (np.exp(rng.uniform(-40, 40, 50_000)) * rng.choice([-1, 1], 50_000)).astype("<f4")  # 115 binades
    config = SegmentedConfig(strategy="level", level=1)
    for values, first in ((narrow, "pack4"), (wide, "zstd")):
        enc = encode_tensor(values.tobytes(), "float32", [values.size], config=config)
        assert segment_codings(enc.manifest)[0] == first
        blobs = dict(zip(enc.manifest["segments"], enc.blobs))
        assert decode_tensor(enc.manifest, blobs.__getitem__, values.nbytes) == values.tobytes()


def test_a_packed_commit_is_smaller_than_plain_zstd_on_bfloat16_and_float32():
    rng = np.random.default_rng(5)
    values = (rng.standard_normal(200_000) * 0.03).astype("<f4")
    for dtype, raw in (("bfloat16", (values.view("<u4") >> np.uint32(16)).astype("<u2").tobytes()),
                       ("float32", values.tobytes())):
        enc = encode_tensor(raw, dtype, [values.size], config=SegmentedConfig(strategy="level", level=1))
        assert segment_codings(enc.manifest)[0] == "pack4"
        blobs = dict(zip(enc.manifest["segments"], enc.blobs))
        exponent = decompress_segment(enc.blobs[0], enc.manifest["segments"][0], values.size, "pack4")
        assert len(enc.blobs[0]) < len(zstandard.ZstdCompressor(level=1).compress(exponent))
        assert decode_tensor(enc.manifest, blobs.__getitem__, len(raw)) == raw


def test_the_archive_keeps_two_bit_codes_where_they_are_smallest():
    """The exponent XOR of a bfloat16 fine-tune step: mostly 0, some 1, a few 2 or 3."""
    rng = np.random.default_rng(9)
    base = (rng.standard_normal(100_000) * 0.03).astype("<f4")
    step = base + (rng.standard_normal(base.size) * 0.002).astype("<f4")
    bf = [(v.view("<u4") >> np.uint32(16)).astype("<u2").tobytes() for v in (base, step)]
    enc = encode_tensor(bf[1], "bfloat16", [base.size], codec="segmented",
                        config=SegmentedConfig(delta="xor"), base_raw=bf[0], base_hash="b" * 64)
    codings = segment_codings(enc.manifest)
    assert codings[0] == "pack2"
    exponent = decompress_segment(enc.blobs[0], enc.manifest["segments"][0], base.size, "pack2")
    tuned = zstandard.ZstdCompressor(level=19).compress(exponent)
    assert len(enc.blobs[0]) < len(tuned)
    blobs = dict(zip(enc.manifest["segments"], enc.blobs))
    assert decode_tensor(enc.manifest, blobs.__getitem__, len(bf[1]), base=lambda h: bf[0]) == bf[1]
