"""The compiled kernels (storage/_kernels.c and _context_kernels.c via storage/kernels.py) against
the numpy code they replace: the same bytes out, the same errors, for any input, damaged ones included."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings, strategies as st

from modelhub.storage import kernels
from modelhub.storage.bits7 import decode_bits7, encode_bits7
from modelhub.storage.bitfields import byte_layout, default_layout, join_fields, split_fields
from modelhub.storage.byteclass import join_byteclass, split_byteclass
from modelhub.storage.context_coding import (CODING_RANS, CODING_RAW, ContextConfig, _container, _unpack_container,
                                             blob_streams, decode_context,
                                             delta_streams, encode_context)
from modelhub.storage.deltas import undo_delta
from modelhub.storage.errors import StorageError
from modelhub.storage.planepack import _HEADER, decode_packed, encode_packed
from modelhub.storage.tensors import commit_config, decode_tensor, encode_tensor

pytestmark = pytest.mark.skipif(kernels.LIB is None and not os.environ.get("DLV_REQUIRE_KERNELS"),
                                reason="the kernels are not built here (no C compiler at install)")

DTYPES = {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8, "float8_e4m3fn": 1, "int32": 4, "int64": 8,
          "uint8": 1}
CCTX = zstandard.ZstdCompressor(level=1)


def test_the_kernels_are_built_where_they_are_required():
    """CI sets DLV_REQUIRE_KERNELS: there a missing build fails instead of skipping this file."""
    assert kernels.LIB is not None


@contextlib.contextmanager
def numpy_only():
    saved, kernels.LIB = kernels.LIB, None
    try:
        yield
    finally:
        kernels.LIB = saved


def both(fn, *args):
    """(result or error message) with the kernels, then with numpy alone."""
    out = []
    for ctx in (contextlib.nullcontext(), numpy_only()):
        with ctx:
            try:
                result = fn(*args)
                out.append(("ok", bytes(result) if not isinstance(result, (list, tuple)) else
                            [bytes(np.asarray(r)) if not isinstance(r, (bytes, str)) else r for r in result]))
            except StorageError as exc:
                out.append((type(exc).__name__, str(exc)))
    return out


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000), dtype=st.sampled_from(sorted(DTYPES)), plain_bytes=st.booleans())
def test_split_and_join_match_numpy_for_every_layout(data, dtype, plain_bytes):
    itemsize = DTYPES[dtype]
    words = np.frombuffer(data[: len(data) // itemsize * itemsize], dtype=f"<u{itemsize}")
    layout = byte_layout(itemsize) if plain_bytes else default_layout(dtype, itemsize)
    fast, slow = both(split_fields, words, layout)
    assert fast == slow
    segments = fast[1]
    fast, slow = both(lambda: join_fields(segments, layout, words.size, itemsize))
    assert fast == slow and fast[1] == words.tobytes()


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=2000), dtype=st.sampled_from(["float32", "bfloat16", "float16"]), st_data=st.data())
def test_join_matches_numpy_whichever_field_comes_first(data, dtype, st_data):
    """The kernel stores the first field and ORs in the others: a one-bit field first (sign-first
    layouts) or any other order gives the same words."""
    itemsize = DTYPES[dtype]
    layout = st_data.draw(st.permutations(default_layout(dtype, itemsize)))
    words = np.frombuffer(data[: len(data) // itemsize * itemsize], dtype=f"<u{itemsize}")
    segments = split_fields(words, layout)
    fast, slow = both(lambda: join_fields(segments, layout, words.size, itemsize))
    assert fast == slow and fast[1] == words.tobytes()


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=1500), dtype=st.sampled_from(["float32", "bfloat16", "float16"]),
       known=st.integers(0, 5))
def test_join_matches_numpy_on_damaged_segments_and_on_the_first_fields_only(data, dtype, known):
    """Field bytes with bits beyond their width, padding bits set, only the first ``known``
    fields (a progressive read): the same words either way."""
    itemsize = DTYPES[dtype]
    layout = default_layout(dtype, itemsize)
    n = len(data) // 2
    rng = np.random.default_rng(len(data))
    segments = [rng.integers(0, 256, (n + 7) // 8 if w == 1 else n, dtype=np.uint8).tobytes()
                for _, w in layout][:known]
    fast, slow = both(lambda: join_fields(segments, layout, n, itemsize))
    assert fast == slow


def _stored_field(data, width: int, n: int):
    """A field in a stored coding for join_sources, with any bytes (damaged ones included), and the
    plane the one-by-one decoders make of it (None: a stray bits7 bit)."""
    kind = data.draw(st.sampled_from(["field", "packed", "bits7"] if width != 1 else ["field"]))
    if kind == "field":
        raw = data.draw(st.binary(min_size=(n + 7) // 8 if width == 1 else n, max_size=(n + 7) // 8 if width == 1 else n))
        return kernels.FieldSource(kernels.SOURCE_FIELD, raw), raw, None
    if kind == "bits7":
        blob = bytearray(np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).integers(0, 128, n - n // 8, dtype=np.uint8))
        for _ in range(data.draw(st.integers(0, 3))):   # top bits: tail bits, or stray ones past the tail planes
            if blob:
                blob[data.draw(st.integers(0, len(blob) - 1))] |= 0x80
        plane = kernels.bits7_decode(bytes(blob), n)
        return kernels.FieldSource(kernels.SOURCE_BITS7, bytes(blob)), plane, None
    bits = data.draw(st.sampled_from([2, 4]))
    lo = data.draw(st.integers(0, 255))
    codes = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).integers(
        0, 256, (n * bits + 7) // 8, dtype=np.uint8)
    codes[codes == 255] = data.draw(st.sampled_from([255, 0]))   # many escape codes, or few
    escapes = data.draw(st.binary(max_size=40))
    plane, found = kernels.unpack_plane(codes, n, bits, lo, escapes)
    return kernels.FieldSource(kernels.SOURCE_PACKED, codes.tobytes(), bits, lo, escapes), plane, found


@settings(max_examples=150, deadline=None)
@given(dtype=st.sampled_from(["float32", "bfloat16", "float16", "float64", "int32", "uint8"]),
       n=st.one_of(st.integers(0, 200), st.integers(16_380, 40_000)), data=st.data())
def test_joining_from_stored_codings_gives_what_unpacking_first_gives(dtype, n, data):
    """join_sources unpacks packed planes and bits7 fields a block at a time inside the join: the
    same words as unpacking each plane first, the same escape counts, refusal on a stray bits7 bit,
    for any bytes, across block boundaries (the join works in blocks of 4,096 elements)."""
    itemsize = DTYPES[dtype]
    layout = default_layout(dtype, itemsize)
    fields = [_stored_field(data, w, n) for _, w in layout]
    words = np.empty(n, dtype=f"<u{itemsize}")
    found = kernels.join_sources([f[0] for f in fields], layout, n, words)
    if any(f[0].kind == kernels.SOURCE_BITS7 and f[1] is None for f in fields):
        assert found is None
        return
    want = join_fields([f[1] for f in fields], layout, n, itemsize)
    assert words.tobytes() == want.tobytes()
    assert found == [f[2] if f[2] is not None else 0 for f in fields]


@settings(max_examples=100, deadline=None)
@given(dtype=st.sampled_from(["bfloat16", "float32", "float16"]), data=st.data())
def test_a_damaged_segmented_tensor_decodes_to_the_same_bytes_or_error_with_or_without_kernels(dtype, data):
    """Decoding joins from the stored codings where it can and falls back to decoding segment by
    segment where a segment is damaged: whichever path, the result or the error named is what the
    numpy decoders give."""
    n = data.draw(st.one_of(st.integers(1, 3000), st.integers(17_000, 40_000)))   # larger ones get pack4 exponents
    rng = np.random.default_rng(n)
    values = (rng.standard_normal(n) * 0.02).astype(np.float32)
    raw = values.astype(np.float16).tobytes() if dtype == "float16" else values.tobytes()
    if dtype == "bfloat16":
        raw = (np.frombuffer(raw, np.uint32) >> 16).astype(np.uint16).tobytes()
    enc = encode_tensor(raw, dtype, [n], config=commit_config())
    blobs = dict(enc.named_blobs())
    for _ in range(data.draw(st.integers(0, 3))):
        name = data.draw(st.sampled_from(sorted(blobs)))
        blob = bytearray(blobs[name])
        if blob and data.draw(st.booleans()):
            blob[data.draw(st.integers(0, len(blob) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        else:
            blob = blob[: data.draw(st.integers(0, len(blob)))]
        blobs[name] = bytes(blob)
    fast, slow = both(lambda: decode_tensor(enc.manifest, blobs.__getitem__, len(raw)))
    assert fast == slow


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=3000), bits=st.sampled_from([2, 4]), lo=st.integers(0, 255), spread=st.integers(1, 40))
def test_pack_and_unpack_match_numpy(data, bits, lo, spread):
    plane = ((np.frombuffer(data, np.uint8).astype(np.int64) % spread + lo) % 256).astype(np.uint8).tobytes()
    fast, slow = both(encode_packed, plane, bits, lo, CCTX)
    assert fast == slow
    fast, slow = both(decode_packed, fast[1], bits, len(plane), "h")
    assert fast == slow == ("ok", plane)


@settings(max_examples=300, deadline=None)
@given(codes=st.binary(max_size=600), escapes=st.binary(max_size=20), bits=st.sampled_from([2, 4]),
       lo=st.integers(0, 255), extra=st.integers(0, 7))
def test_unpack_matches_numpy_on_hostile_blobs(codes, escapes, bits, lo, extra):
    """Any codes with any number of stored escapes: the same plane or the same error."""
    n = max(0, len(codes) * 8 // bits - extra)
    blob = _HEADER.pack(lo, len(escapes)) + escapes + CCTX.compress(codes)
    fast, slow = both(decode_packed, blob, bits, n, "h")
    assert fast == slow


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=3000), wide=st.booleans())
def test_bits7_matches_numpy_both_ways_and_on_damage(data, wide):
    field = data if wide else (np.frombuffer(data, np.uint8) & 0x7F).tobytes()
    fast, slow = both(encode_bits7, field)
    assert fast == slow
    blob = fast[1] if fast[0] == "ok" else data[: len(data) - len(data) // 8]   # wide: any bytes as a blob
    fast, slow = both(decode_bits7, blob, len(data), "h")
    assert fast == slow


@pytest.mark.parametrize("n", [16_384 * 8 - 1, 16_384 * 8 + 8, 16_384 * 16 + 13, 600_011])
def test_bits7_matches_numpy_across_the_kernels_tail_blocks(n):
    """The kernels move the tail's bits 16,384 tail elements at a time (numpy 65,536): tails of
    one element short of a block, just past one, and of several blocks, with every bit pattern."""
    field = np.random.default_rng(n).integers(0, 128, n, dtype=np.uint8).tobytes()
    fast, slow = both(encode_bits7, field)
    assert fast == slow and fast[0] == "ok"
    fast, slow = both(decode_bits7, fast[1], n, "h")
    assert fast == slow == ("ok", field)


# -- the context coder's decoder (storage/_context_kernels.c) ---------------------------------

CONTEXT_WORD = {"float16": "<u2", "bfloat16": "<u2", "float32": "<u4", "float64": "<u8"}


def _context_pair(data, dtype: str) -> tuple[bytes, bytes]:
    """A tensor and its parent: any bit patterns, a small update (few bits flipped), or equal."""
    itemsize = np.dtype(CONTEXT_WORD[dtype]).itemsize
    n = data.draw(st.integers(1, 400))
    raw = data.draw(st.binary(min_size=n * itemsize, max_size=n * itemsize))
    mode = data.draw(st.sampled_from(["random", "near", "equal"]))
    if mode == "random":
        return raw, data.draw(st.binary(min_size=n * itemsize, max_size=n * itemsize))
    words = np.frombuffer(raw, CONTEXT_WORD[dtype]).copy()
    if mode == "near":
        flips = np.frombuffer(data.draw(st.binary(min_size=n, max_size=n)), np.uint8) % 8
        words ^= flips.astype(words.dtype)
    return raw, words.tobytes()


def _decode_context_blob(manifest, blob: bytes, nbytes: int, base: bytes) -> bytes:
    return decode_context(manifest, lambda _h: blob, nbytes, base=lambda _h: base)


@settings(max_examples=200, deadline=None)
@given(dtype=st.sampled_from(sorted(CONTEXT_WORD)), op=st.sampled_from(["osub", "xor"]), data=st.data())
def test_context_decode_matches_numpy(dtype, op, data):
    raw, base = _context_pair(data, dtype)
    config = ContextConfig(min_group=data.draw(st.integers(1, 64)), min_elements=1, ops=(op,))
    enc = encode_context(raw, dtype, [len(raw)], base_raw=base, base_hash="b" * 64, config=config)
    fast, slow = both(_decode_context_blob, enc.manifest, enc.blobs[0], len(raw), base)
    assert fast == slow == ("ok", raw)


@settings(max_examples=300, deadline=None)
@given(dtype=st.sampled_from(sorted(CONTEXT_WORD)), data=st.data())
def test_context_decode_matches_numpy_on_damaged_streams(dtype, data):
    """Streams changed after the encoder (counts that disagree with the other streams' lengths, codes
    out of range, streams cut or lengthened, bytes flipped): the same bytes or the same error."""
    raw, base = _context_pair(data, dtype)
    config = ContextConfig(min_group=data.draw(st.integers(1, 64)), min_elements=1)
    enc = encode_context(raw, dtype, [len(raw)], base_raw=base, base_hash="b" * 64, config=config)
    streams = blob_streams(enc.manifest, enc.blobs[0], base)
    i = data.draw(st.integers(0, len(streams) - 1))
    damage = data.draw(st.sampled_from(["flip", "cut", "extend", "replace"]))
    stream = bytearray(streams[i])
    if damage == "flip" and stream:
        at = data.draw(st.integers(0, len(stream) - 1))
        stream[at] = data.draw(st.integers(0, 255))
    elif damage == "cut" and stream:
        del stream[data.draw(st.integers(0, len(stream) - 1)):]
    elif damage == "extend":
        stream += data.draw(st.binary(min_size=1, max_size=8))
    else:
        stream = bytearray(data.draw(st.binary(max_size=2 * len(stream) + 2)))
    streams[i] = bytes(stream)
    blob = _container([(s, CODING_RAW) for s in streams])
    fast, slow = both(_decode_context_blob, enc.manifest, blob, len(raw), base)
    assert fast == slow


@settings(max_examples=200, deadline=None)
@given(dtype=st.sampled_from(sorted(CONTEXT_WORD)), op=st.sampled_from(["osub", "xor"]), data=st.data())
def test_context_encoder_streams_match_numpy(dtype, op, data):
    """The encoder's two compiled passes give the numpy encoder's streams, byte for byte."""
    raw, base = _context_pair(data, dtype)
    words, base_words = (np.frombuffer(b, CONTEXT_WORD[dtype]) for b in (raw, base))
    fast, slow = both(delta_streams, words, base_words, op, dtype, data.draw(st.integers(1, 64)))
    assert fast == slow


def _parent_words(rng, n: int, dtype: str) -> np.ndarray:
    """n trained-like parent weights over many exponents (2^-20 .. 2^3), as ``dtype``'s words."""
    values = rng.standard_normal(n) * np.exp2(rng.integers(-20, 4, n))
    if dtype == "bfloat16":
        return (values.astype("<f4").view("<u4") >> 16).astype(CONTEXT_WORD[dtype])
    return values.astype({"float16": "<f2", "float32": "<f4", "float64": "<f8"}[dtype]).view(CONTEXT_WORD[dtype])


@pytest.mark.parametrize("dtype", sorted(CONTEXT_WORD))
def test_context_encoder_streams_match_numpy_across_many_groups_and_counts(dtype):
    """200k trained-like elements over many exponents, small groups: every (count, group) run is
    written next to runs that elements earlier in position order have written (a store past an
    element's own bytes would overwrite them)."""
    rng = np.random.default_rng(7)
    base_words = _parent_words(rng, 200_000, dtype)
    word = CONTEXT_WORD[dtype]
    words = base_words + rng.integers(0, 3000, base_words.size).astype(word) * (rng.random(base_words.size) < 0.8)
    for op in ("osub", "xor"):
        fast, slow = both(delta_streams, words, base_words, op, dtype, 16)
        assert fast == slow


@pytest.mark.parametrize("changed", [0.9, 0.3])
@pytest.mark.parametrize("dtype", sorted(CONTEXT_WORD))
def test_context_decode_matches_numpy_across_gather_blocks_and_many_groups(dtype, changed):
    """30k elements over many exponents, small groups, every byte count: the gather's two passes run
    over several blocks of 4,096 elements, and cursors carry from one block to the next. With 30% of
    the elements changed, blocks take the path for mostly unchanged blocks (only the changed elements
    read their bytes); with 90%, the other."""
    rng = np.random.default_rng(11)
    base_words = _parent_words(rng, 30_000, dtype)
    word = CONTEXT_WORD[dtype]
    step = rng.integers(0, 1 << (8 * base_words.itemsize - 2), base_words.size, dtype=np.uint64) >> \
        rng.integers(0, 8 * base_words.itemsize - 2, base_words.size, dtype=np.uint64)   # every byte count
    words = base_words ^ (step * (rng.random(base_words.size) < changed)).astype(word)
    raw, base = words.tobytes(), base_words.tobytes()
    for op in ("osub", "xor"):
        enc = encode_context(raw, dtype, [len(raw)], base_raw=base, base_hash="b" * 64,
                             config=ContextConfig(min_group=32, min_elements=1, ops=(op,)))
        fast, slow = both(_decode_context_blob, enc.manifest, enc.blobs[0], len(raw), base)
        assert fast == slow == ("ok", raw)


def test_context_decode_matches_numpy_when_an_rans_stream_is_damaged():
    """The compiled decoder decodes a tensor's rANS streams in one kernel call per stream list; a damaged
    one among them fails as in the numpy decoder (the same error class: the pure-Python rANS decoder
    says more about a damaged table than the kernel does), and never decodes to the tensor."""
    rng = np.random.default_rng(4)
    parent = (rng.standard_normal(60_000) * np.exp2(rng.integers(-6, 0, 60_000))).astype("<f4")
    child = (parent + rng.standard_normal(60_000).astype("<f4") * 1e-3).astype("<f4")
    raw, base = child.tobytes(), parent.tobytes()
    enc = encode_context(raw, "float32", [60_000], base_raw=base, base_hash="b" * 64,
                         config=ContextConfig(min_group=256, min_elements=1))
    unpacked = _unpack_container(enc.blobs[0], "<blob>")
    stored = [(unpacked.stream(i), coding) for i, coding in enumerate(unpacked.codings)]
    rans_streams = [i for i, (_, coding) in enumerate(stored) if coding == CODING_RANS]
    assert len(rans_streams) >= 4
    for i in rans_streams:
        for at in (2, len(stored[i][0]) // 2, len(stored[i][0]) - 1):   # the table, the payload, its end
            damaged = [(bytes(d), c) for d, c in stored]
            data = bytearray(damaged[i][0])
            data[at] ^= 0x5A
            damaged[i] = (bytes(data), CODING_RANS)
            fast, slow = both(_decode_context_blob, enc.manifest, _container(damaged), len(raw), base)
            assert fast[0] == slow[0] == "CorruptBlobError", (i, at, fast, slow)


_GUARDED_DECODE = """
import ctypes, mmap, sys
import numpy as np
from modelhub.storage.context_coding import ContextConfig, blob_codings, decode_context, encode_context
rng = np.random.default_rng(3)
parent = (rng.standard_normal(20_000) * 0.05).astype("<f4")
child = parent + (rng.standard_normal(20_000) * 1e-3).astype("<f4")
raw, base = child.tobytes(), parent.tobytes()
enc = encode_context(raw, "float32", [20_000], base_raw=base, base_hash="b" * 64, config=ContextConfig(min_elements=1))
blob = enc.blobs[0]
assert blob_codings(blob)[-1] == 0, "the last stream (low bytes) should be raw"
page = mmap.PAGESIZE
size = -(-len(blob) // page) * page
area = mmap.mmap(-1, size + page)
address = ctypes.addressof(ctypes.c_char.from_buffer(area))
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
assert libc.mprotect(address + size, page, 0) == 0       # PROT_NONE: a read past the blob faults
area[size - len(blob):size] = blob
view = memoryview(area)[size - len(blob):size]
assert decode_context(enc.manifest, lambda h: view, len(raw), base=lambda h: base) == raw
print("decoded")
"""


def test_context_decode_reads_low_streams_in_place_without_reading_past_them():
    """The low bytes are read 8 at a time where they lie (a raw stream is a view of the blob, which may
    be a mapped file): the last elements of a stream must not read past it. The blob ends at a page
    that faults when read; run in a child, so that a fault fails this test instead of ending pytest."""
    done = subprocess.run([sys.executable, "-c", _GUARDED_DECODE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "decoded", done.stderr[-2000:]


def test_context_decode_of_an_unaligned_parent_uses_numpy_and_gives_the_same_bytes():
    rng = np.random.default_rng(5)
    parent = (rng.standard_normal(5000) * 0.05).astype("<f4")
    raw = (parent + rng.standard_normal(5000).astype("<f4") * 1e-3).astype("<f4").tobytes()
    enc = encode_context(raw, "float32", [5000], base_raw=parent.tobytes(), base_hash="b" * 64,
                         config=ContextConfig(min_group=64, min_elements=1))
    shifted = bytearray(len(raw) + 1)
    shifted[1:] = parent.tobytes()
    base = memoryview(shifted)[1:]                       # a parent mapped at an odd offset
    assert not kernels.aligned(np.frombuffer(base, "<u4"))
    assert _decode_context_blob(enc.manifest, enc.blobs[0], len(raw), base) == raw


# -- deltas (storage/deltas.py, storage/byteclass.py) ------------------------------------------

@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=3000), size=st.sampled_from([1, 2, 4, 8]), op=st.sampled_from(["xor", "sub", "osub"]),
       small=st.booleans())
def test_byteclass_join_and_undo_delta_match_numpy(data, size, op, small):
    """Delta words of any size (small ones: mostly zero high bytes, as after training), joined from
    their byte classes and undone against any base."""
    n = len(data) // (2 * size)
    words = np.frombuffer(data[:n * size], dtype=f"<u{size}").copy()
    if small:
        words >>= np.array(max(0, 8 * size - 9), dtype=words.dtype)
    base = np.frombuffer(data[n * size:2 * n * size], dtype=f"<u{size}")
    segments = split_byteclass(words)

    def decode():
        delta = join_byteclass([bytes(s) for s in segments], n, size)
        out = np.empty(n, dtype=words.dtype)
        if kernels.LIB is not None:
            out[:] = delta
            kernels.undo_delta(op, out, base)
            return out
        return undo_delta(op, delta, base)

    fast, slow = both(decode)
    assert fast == slow
    assert bytes(join_byteclass([bytes(s) for s in segments], n, size)) == words.tobytes()


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=3000), size=st.sampled_from([1, 2, 4, 8]), shift=st.integers(0, 63))
def test_byteclass_split_matches_numpy(data, size, shift):
    """Words of any size, their high bytes zero from any bit on (every count occurs), split into
    byte classes by the kernel's branch-free stores and by numpy's masks: the same segments."""
    n = len(data) // size
    words = np.frombuffer(data[:n * size], dtype=f"<u{size}") >> np.array(shift % (8 * size), dtype=f"<u{size}")
    fast, slow = both(split_byteclass, words)
    assert fast == slow


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=5000))
def test_byte_histogram_matches_bincount(data):
    hist = kernels.byte_histogram(data)
    assert hist.tolist() == np.bincount(np.frombuffer(data, np.uint8), minlength=256).tolist()
