"""Progressive reads: the first k segments bound every value, for every k."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from modelhub.storage.errors import CodecError
from modelhub.storage.objects import content_hash
from modelhub.storage.progressive import read_intervals
from modelhub.storage.segmented import SegmentedConfig
from modelhub.storage.tensors import encode_tensor

FLOAT_VIEWS = {"float32": ("<u4", "<f4"), "float64": ("<u8", "<f8"), "float16": ("<u2", "<f2")}


def exact_values(raw: bytes, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return (np.frombuffer(raw, "<u2").astype(np.uint32) << np.uint32(16)).view("<f4").astype(np.float64)
    return np.frombuffer(raw, FLOAT_VIEWS[dtype][1]).astype(np.float64)


def check_all_k(raw: bytes, dtype: str, n: int):
    enc = encode_tensor(raw, dtype, [n], codec="segmented")
    store = {content_hash(b): b for b in enc.blobs}
    x = exact_values(raw, dtype)
    widths = []
    total = len(enc.manifest["segments"])
    for k in range(total + 1):
        iv = read_intervals(enc.manifest, store.__getitem__, len(raw), k)
        nan = np.isnan(x)
        assert iv.maybe_nan[nan].all(), f"k={k}: a NaN was not flagged"
        inside = (iv.lo[~nan] <= x[~nan]) & (x[~nan] <= iv.hi[~nan])
        assert inside.all(), f"k={k}: {x[~nan][~inside][:3]} outside {iv.lo[~nan][~inside][:3]}..{iv.hi[~nan][~inside][:3]}"
        # -0.0 and +0.0 compare equal; the sign bit must still be inside once read
        if k >= 2:
            neg = np.signbit(x) & ~nan
            assert (np.signbit(iv.lo[neg]) | (iv.lo[neg] < 0)).all()
        with np.errstate(invalid="ignore"):  # inf - inf: an unbounded interval, counted as infinite width
            span = iv.hi - iv.lo
        widths.append(np.where(np.isfinite(span), span, np.inf))
        assert iv.segments_read == k and iv.bytes_read == sum(enc.manifest["sizes"][:k])
    # all segments: exact values (degenerate intervals), NaN certain
    nan = np.isnan(x)
    assert np.array_equal(iv.lo[~nan], x[~nan]) and np.array_equal(iv.hi[~nan], x[~nan])
    assert np.isnan(iv.lo[nan]).all()
    # intervals only shrink as k grows
    for a, b in zip(widths, widths[1:]):
        assert (b <= a).all()


@settings(max_examples=50, deadline=None)
@given(dtype=st.sampled_from(["float32", "float64", "float16", "bfloat16"]),
       words=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=64))
def test_intervals_contain_exact_value_for_arbitrary_bit_patterns(dtype, words):
    size = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}[dtype]
    w = (np.array(words, dtype=np.uint64) & np.uint64(2 ** (8 * size) - 1)).astype(f"<u{size}")
    check_all_k(w.tobytes(), dtype, len(w))


def test_intervals_on_special_values():
    vals = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1.17549435e-38,
                     -2.5, 3.4028235e38, 0.125, -0.0078125], dtype="<f4")
    check_all_k(vals.tobytes(), "float32", len(vals))


def test_first_segment_bounds_magnitude_within_a_factor_of_two():
    vals = (np.random.default_rng(0).standard_normal(1000) * 0.1).astype("<f4")
    vals[vals == 0] = 1.0
    enc = encode_tensor(vals.tobytes(), "float32", [1000], codec="segmented")
    store = {content_hash(b): b for b in enc.blobs}
    iv = read_intervals(enc.manifest, store.__getitem__, 4000, 1)
    mag = np.abs(vals.astype(np.float64))
    assert np.all(iv.hi <= 2 * mag) and np.all(iv.hi >= mag) and np.array_equal(iv.lo, -iv.hi)
    iv2 = read_intervals(enc.manifest, store.__getitem__, 4000, 2)
    assert np.all((iv2.lo >= 0) == (vals > 0))


def test_delta_tensors_need_their_base_and_then_are_exact():
    a = (np.random.default_rng(3).standard_normal(256) * 0.1).astype("<f4")
    b = a + np.float32(1e-4)
    enc = encode_tensor(b.tobytes(), "float32", [256], codec="segmented", base_raw=a.tobytes(),
                        base_hash="a" * 64, config=SegmentedConfig(delta="osub"))
    store = {content_hash(x): x for x in enc.blobs}
    with pytest.raises(CodecError, match="stored as a delta, whose first segments do not bound"):
        read_intervals(enc.manifest, store.__getitem__, 1024, 1)
    iv = read_intervals(enc.manifest, store.__getitem__, 1024, 1, base=lambda h: a.tobytes())
    assert np.array_equal(iv.lo, b.astype(np.float64)) and np.array_equal(iv.hi, iv.lo)


def test_progressive_reads_refuse_integers_and_bad_k():
    enc = encode_tensor(bytes(80), "int64", [10], codec="segmented")
    with pytest.raises(CodecError, match="apply to float tensors .* not int64"):
        read_intervals(enc.manifest, lambda h: b"", 80, 1)
    enc = encode_tensor(bytes(40), "float32", [10], codec="segmented")
    with pytest.raises(CodecError, match="k=9 segments requested but the tensor has 5"):
        read_intervals(enc.manifest, lambda h: b"", 40, 9)
