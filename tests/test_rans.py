"""rANS streams (storage/rans.py, storage/_rans_kernels.c): bit-exact round trips, the compiled coder
against the pure-Python reference (encoded bytes, decoded bytes, damaged streams), the table."""
from __future__ import annotations

import os

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings, strategies as st

from modelhub.storage import kernels, rans
from modelhub.storage.errors import CorruptBlobError

needs_kernels = pytest.mark.skipif(kernels.LIB is None and not os.environ.get("DLV_REQUIRE_KERNELS"),
                                   reason="the compiled kernels are not built (pip install -e . with a C compiler)")


def skewed(n: int, seed: int, spread: float = 6.0) -> bytes:
    """Bytes with a geometric-like distribution, as the context coder's lead and count streams have."""
    rng = np.random.default_rng(seed)
    return np.minimum(rng.exponential(spread, n), 255).astype(np.uint8).tobytes()


def symbol_streams():
    """Any bytes, and bytes drawn from a few symbols (the skew rANS is for)."""
    alphabet = st.lists(st.integers(0, 255), min_size=1, max_size=6, unique=True)
    few = alphabet.flatmap(lambda a: st.lists(st.sampled_from(a), min_size=1, max_size=3000).map(bytes))
    return st.one_of(st.binary(min_size=1, max_size=3000), few)


def reference_stream(data: bytes) -> bytes:
    scale, freq = rans.choose_scale(np.bincount(np.frombuffer(data, np.uint8), minlength=256))
    return rans.table_bytes(freq, scale) + rans.encode_payload_reference(data, freq, scale)


def reference_decode(stream: bytes, n: int):
    """("ok", symbols) or ("error", message) from the pure-Python decoder."""
    try:
        view = memoryview(stream)
        freq, scale, start = rans.parse_table(view, "h")
        out = rans.decode_payload_reference(view[start:], freq, scale, n)
        return ("ok", out) if out is not None else ("error", "damaged")
    except CorruptBlobError:
        return ("error", "damaged")


def compiled_decode(stream: bytes, n: int):
    try:
        return ("ok", bytes(rans.decode(stream, n, "h")))
    except CorruptBlobError:
        return ("error", "damaged")


# -- round trips ------------------------------------------------------------------------------

@needs_kernels
@settings(max_examples=300, deadline=None)
@given(data=symbol_streams())
def test_any_bytes_round_trip_and_the_kernel_writes_the_reference_bytes(data):
    stream = rans.encode(data)
    assert stream == reference_stream(data)
    assert rans.decode(stream, len(data), "h") == data
    assert reference_decode(stream, len(data)) == ("ok", data)


@needs_kernels
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 100_003])
def test_lengths_around_the_four_states_round_trip(n):
    data = skewed(n, seed=n)
    assert rans.decode(rans.encode(data), n, "h") == data


@needs_kernels
def test_one_symbol_streams_cost_only_their_table_and_states():
    """A symbol of probability 1 carries no information: no word is written, the states stay at 2^16."""
    stream = rans.encode(b"\x07" * 50_000)
    freq, scale, used = rans.parse_table(memoryview(stream), "h")
    assert np.flatnonzero(freq).tolist() == [7] and used == 2 + 3    # 7 one-bit codes and gamma(2^8 + 1)
    assert stream[used:] == (1 << 16).to_bytes(4, "little") * 4


def test_the_pure_python_decoder_is_the_fallback(monkeypatch):
    data = skewed(2000, seed=3)
    stream = reference_stream(data)
    monkeypatch.setattr(kernels, "LIB", None)
    assert rans.encode(data) is None          # without the kernels the encoder is not tried
    assert rans.decode(stream, len(data), "h") == data


# -- size -------------------------------------------------------------------------------------

@needs_kernels
@pytest.mark.parametrize("n, spread", [(1000, 3.0), (4000, 6.0), (50_000, 12.0)])
def test_a_skewed_stream_is_within_a_few_bytes_of_its_entropy_and_shorter_than_zstd(n, spread):
    data = skewed(n, seed=1, spread=spread)
    hist = np.bincount(np.frombuffer(data, np.uint8), minlength=256)
    p = hist[hist > 0] / n
    entropy_bytes = float(-(p * np.log2(p)).sum()) * n / 8
    stream = rans.encode(data)
    table = len(rans.table_bytes(*reversed(rans.choose_scale(hist))))
    assert len(stream) - table - 16 < entropy_bytes * 1.01 + 2
    cctx = zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters.from_level(
        3, strategy=zstandard.STRATEGY_BTULTRA2, write_content_size=0, format=zstandard.FORMAT_ZSTD1_MAGICLESS))
    assert len(stream) < len(cctx.compress(data))


# -- the table --------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(hist=st.lists(st.integers(0, 10 ** 6), min_size=256, max_size=256).filter(lambda h: sum(h) > 0),
       scale=st.integers(rans.MIN_SCALE, rans.MAX_SCALE))
def test_normalized_frequencies_sum_to_the_scale_and_keep_every_symbol(hist, scale):
    hist = np.array(hist, dtype=np.int64)
    freq = rans.normalize(hist, scale)
    assert int(freq.sum()) == 1 << scale
    assert ((freq > 0) == (hist > 0)).all()
    freq2, scale2, used = rans.parse_table(memoryview(rans.table_bytes(freq, scale) + b"\xff" * 20), "h")
    assert freq2.tolist() == freq.tolist() and scale2 == scale
    assert used == len(rans.table_bytes(freq, scale))


@pytest.mark.parametrize("stream, message", [
    (b"\x0c", "shorter than its header"),
    (b"\x07\x00\x80", "names scale 7"),
    (b"\x10\x00\x80", "names scale 16"),
    (b"\x08\x01\x00", "cut short"),
    (b"\x08\x00\x00\x00\x00", "damaged"),
    (b"\x08\x00\x80", "do not add up"),      # symbol 0 with frequency 0
])
def test_damaged_tables_say_what_is_wrong(stream, message):
    with pytest.raises(CorruptBlobError, match=message):
        rans.parse_table(memoryview(stream), "h")


# -- damage -----------------------------------------------------------------------------------

@needs_kernels
@settings(max_examples=400, deadline=None)
@given(data=symbol_streams(), damage=st.sampled_from(["flip", "cut", "extend", "replace", "length"]), st_data=st.data())
def test_damaged_streams_fail_alike_in_the_kernel_and_the_reference(data, damage, st_data):
    """Flipped, cut, lengthened or replaced streams, or a wrong symbol count: both decoders give the
    same bytes, or both refuse (they never read past the stream)."""
    stream = bytearray(rans.encode(data))
    n = len(data)
    if damage == "flip":
        at = st_data.draw(st.integers(0, len(stream) - 1))
        stream[at] ^= st_data.draw(st.integers(1, 255))
    elif damage == "cut":
        del stream[st_data.draw(st.integers(0, len(stream) - 1)):]
    elif damage == "extend":
        stream += st_data.draw(st.binary(min_size=1, max_size=8))
    elif damage == "replace":
        stream = bytearray(st_data.draw(st.binary(max_size=2 * len(stream) + 2)))
    else:
        n = st_data.draw(st.integers(0, 2 * n + 2).filter(lambda m: m != len(data)))
    assert compiled_decode(bytes(stream), n) == reference_decode(bytes(stream), n)



@needs_kernels
@settings(max_examples=600, deadline=None)
@given(scale=st.integers(7, 13), last=st.integers(0, 255), table=st.binary(max_size=80), payload=st.binary(max_size=40),
       n=st.integers(0, 40))
def test_any_table_bits_read_alike_in_the_kernel_and_the_reference(scale, last, table, payload, n):
    """The kernel reads the table's Elias-gamma codes from a 64-bit window, the reference bit by bit:
    any bits after a plausible header (codes cut short, too many zeros, frequencies that do not add up,
    a table that happens to be whole) give the same verdict and the same symbols."""
    stream = bytes([scale, last]) + table + payload
    assert compiled_decode(stream, n) == reference_decode(stream, n)


def test_a_table_of_the_widest_codes_is_read_whole_and_refused_cut():
    """Frequencies up to 2^12 (a code of 12 zeros and 13 bits): the table [1, 4095] at scale 12 and its
    stream decode in both decoders; cut by its last bytes (which are zero bits, the very bits a window
    padded with zeros would supply), both refuse it."""
    freq = np.zeros(256, dtype=np.int64)
    freq[:2] = (1, 4095)
    table = rans.table_bytes(freq, 12)
    assert table[-2:] == b"\0\0"
    data = bytes([1]) + bytes(4095)
    stream = table + rans.encode_payload_reference(data, freq, 12)
    assert compiled_decode(stream, len(data)) == reference_decode(stream, len(data)) == ("ok", data)
    for cut in (1, 2):
        assert compiled_decode(table[:-cut], 0) == reference_decode(table[:-cut], 0) == ("error", "damaged")

@needs_kernels
def test_a_damaged_payload_is_refused_with_the_blob_named():
    stream = bytearray(rans.encode(skewed(5000, seed=2)))
    stream[-1] ^= 0x5A
    with pytest.raises(CorruptBlobError, match=r"object feedfacefeedface is corrupt \(an rANS stream is damaged\)"):
        rans.decode(bytes(stream), 5000, "feedface" * 8)
