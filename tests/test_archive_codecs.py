"""Round trips of the parameter archive's codecs: bit-exact for every dtype and delta."""
from __future__ import annotations

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings, strategies as st

from modelhub.storage.bitfields import check_layout, default_layout, join_fields, split_fields
from modelhub.storage.codecs import CODECS, get_codec
from modelhub.storage.deltas import DELTA_OPS, apply_delta, undo_delta
from modelhub.storage.errors import CodecError, CorruptBlobError, StorageError
from modelhub.storage.lossy import LossyConfig
from modelhub.storage.objects import content_hash
from modelhub.storage.segmented import SegmentedConfig, decompress_segment, segment_codings
from modelhub.storage.tensors import (DTYPE_SIZES, decode_tensor, delta_base, delta_op, encode_tensor,
                                      manifest_blobs)

UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
SPECIAL_F32 = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-45, 1.1754942e-38,
                        3.4028235e38, -3.4028235e38], dtype="<f4")
DTYPES = ["float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8", "bool"]


def store_of(encoded) -> dict:
    return {content_hash(b): b for b in encoded.blobs}


def random_raw(rng: np.random.Generator, dtype: str, n: int) -> bytes:
    size = DTYPE_SIZES[dtype]
    if dtype == "float32":
        vals = (rng.standard_normal(n) * 0.05).astype("<f4")
        k = min(n, len(SPECIAL_F32))
        vals[rng.choice(n, k, replace=False)] = SPECIAL_F32[:k]
        return vals.tobytes()
    if dtype == "bool":
        return rng.integers(0, 2, n, dtype=np.uint8).tobytes()
    # arbitrary bit patterns cover NaN payloads, denormals, infinities of every float type
    return rng.integers(0, 256, n * size, dtype=np.uint8).tobytes()


def roundtrip(raw, dtype, shape, **kw):
    enc = encode_tensor(raw, dtype, shape, codec="segmented", **kw)
    store = store_of(enc)
    assert set(manifest_blobs(enc.manifest)) == set(store)
    base_raw = kw.get("base_raw")
    out = decode_tensor(enc.manifest, store.__getitem__, len(raw),
                        base=(lambda h: base_raw) if base_raw is not None else None)
    return enc, out


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from(DTYPES), shape=st.lists(st.integers(0, 7), min_size=0, max_size=3),
       seed=st.integers(0, 2**32 - 1), delta=st.sampled_from(["none", "auto", "xor", "sub", "osub"]),
       layout=st.sampled_from(["exponent-first", "bytes"]))
def test_roundtrip_is_bit_exact(dtype, shape, seed, delta, layout):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape)) if shape else 1
    raw = random_raw(rng, dtype, n)
    base = random_raw(rng, dtype, n)
    if delta == "osub" and dtype not in ("float32", "float16", "bfloat16", "float64"):
        delta = "sub"
    kw = {} if delta == "none" else {"base_raw": base, "base_hash": "b" * 64}
    enc, out = roundtrip(raw, dtype, shape, config=SegmentedConfig(delta=delta, layout=layout), **kw)
    assert out == raw
    if delta in DELTA_OPS:
        assert delta_op(enc.manifest) == delta and delta_base(enc.manifest) == "b" * 64


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
def test_close_versions_are_stored_as_smaller_deltas(dtype):
    import torch

    torch.manual_seed(0)
    a = torch.randn(4096) * 0.02
    b = a + torch.randn(4096) * 1e-4  # one small training step
    ta, tb = a.to(getattr(torch, dtype)), b.to(getattr(torch, dtype))
    raw_a = ta.view(torch.uint8).numpy().tobytes() if dtype == "bfloat16" else ta.numpy().tobytes()
    raw_b = tb.view(torch.uint8).numpy().tobytes() if dtype == "bfloat16" else tb.numpy().tobytes()
    whole, out_whole = roundtrip(raw_b, dtype, [4096])
    delta, out_delta = roundtrip(raw_b, dtype, [4096], base_raw=raw_a, base_hash="a" * 64)
    assert out_whole == raw_b and out_delta == raw_b
    assert delta.manifest["delta"]["op"] in DELTA_OPS
    assert sum(delta.manifest["sizes"]) < sum(whole.manifest["sizes"])


def test_auto_delta_falls_back_to_whole_storage_for_unrelated_base():
    rng = np.random.default_rng(1)
    raw = (rng.standard_normal(2048) * 0.05).astype("<f4").tobytes()
    unrelated = rng.integers(0, 2**32, 2048, dtype=np.uint32).tobytes()
    enc, out = roundtrip(raw, "float32", [2048], base_raw=unrelated, base_hash="c" * 64)
    assert out == raw and enc.manifest["delta"] is None and delta_base(enc.manifest) is None


def test_exponent_first_layout_of_float32():
    assert default_layout("float32", 4) == ((23, 8), (31, 1), (16, 7), (8, 8), (0, 8))
    assert default_layout("bfloat16", 2) == ((7, 8), (15, 1), (0, 7))
    # float16: the exponent with the two mantissa bits that follow it (bitfields._FLOAT16_LAYOUT)
    assert default_layout("float16", 2) == ((8, 7), (15, 1), (0, 8))
    assert default_layout("int64", 8)[0] == (56, 8)


@settings(max_examples=40, deadline=None)
@given(words=st.lists(st.integers(0, 2**32 - 1), max_size=50))
def test_split_and_join_fields_are_inverse(words):
    w = np.array(words, dtype="<u4")
    layout = default_layout("float32", 4)
    assert np.array_equal(join_fields(split_fields(w, layout), layout, len(w), 4), w)


@settings(max_examples=40, deadline=None)
@given(x=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=40), seed=st.integers(0, 1000))
def test_delta_ops_are_bijections(x, seed):
    for size in (2, 4, 8):
        t = UINT[size]
        xs = (np.array(x, dtype=np.uint64) & np.uint64(2 ** (8 * size) - 1)).astype(t)
        base = np.random.default_rng(seed).integers(0, 2 ** (8 * size) - 1, len(xs), dtype=np.uint64).astype(t)
        for op in DELTA_OPS:
            assert np.array_equal(undo_delta(op, apply_delta(op, xs, base), base), xs)


def test_invalid_layouts_are_refused():
    with pytest.raises(CodecError, match="does not cover all 32 bits"):
        check_layout([[0, 8]], 4)
    with pytest.raises(CodecError, match="overlaps another"):
        check_layout([[0, 8], [4, 8], [16, 8], [24, 8]], 4)


def test_corrupt_segment_is_reported_by_name():
    raw = np.arange(1000, dtype="<f4").tobytes()
    enc = encode_tensor(raw, "float32", [1000], codec="segmented")
    store = store_of(enc)
    assert enc.manifest["codings"][0] == "zstd"   # a frame: its checksum catches the damage
    victim = enc.manifest["segments"][0]
    store[victim] = store[victim][:-3] + b"xyz"
    with pytest.raises(CorruptBlobError, match=f"object {victim[:16]} is corrupt"):
        decode_tensor(enc.manifest, store.__getitem__, len(raw))


def test_object_store_detects_bit_flip(tmp_path):
    from modelhub.storage.objects import ObjectStore

    objects = ObjectStore(tmp_path)
    raw = (np.arange(512, dtype="<f4") / 7).tobytes()
    enc = encode_tensor(raw, "float32", [512], codec="segmented")
    for b in enc.blobs:
        objects.put(b)
    victim = enc.manifest["segments"][0]
    path = objects.path_of(victim)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptBlobError, match=f"{victim[:16]} is corrupt \\(checksum mismatch\\)"):
        decode_tensor(enc.manifest, objects.get, len(raw))


def test_delta_manifest_without_base_resolver_is_refused():
    a = np.zeros(64, dtype="<f4")
    b = a + np.float32(1.0)
    enc = encode_tensor(b.tobytes(), "float32", [64], codec="segmented", base_raw=a.tobytes(),
                        base_hash="d" * 64, config=SegmentedConfig(delta="xor"))
    with pytest.raises(CodecError, match="stored as a delta; pass base="):
        decode_tensor(enc.manifest, store_of(enc).__getitem__, 256)


def test_format1_manifests_stay_readable():
    raw = np.arange(100, dtype="<i8").tobytes()
    enc = encode_tensor(raw, "int64", [100], codec="zstd-whole")
    assert enc.manifest["format"] == 1 and enc.manifest["codec"] == "zstd-whole"
    assert decode_tensor(enc.manifest, store_of(enc).__getitem__, len(raw)) == raw
    assert manifest_blobs(enc.manifest) == enc.manifest["segments"]


def test_unknown_codec_and_bad_config_messages():
    with pytest.raises(CodecError, match="unknown tensor codec 'nope'; upgrade modelhub"):
        decode_tensor({"codec": "nope"}, lambda h: b"", 0)
    with pytest.raises(CodecError, match="unknown delta mode 'diff'; use one of"):
        SegmentedConfig(delta="diff")
    with pytest.raises(CodecError, match="do not match dtype float32"):
        encode_tensor(b"abc", "float32", [1], codec="segmented")
    assert set(CODECS) >= {"zstd-whole", "segmented"}
    assert issubclass(CodecError, StorageError)
    assert get_codec("segmented").id == "segmented"


def test_new_commits_default_to_the_segmented_codec():
    enc = encode_tensor(np.arange(8, dtype="<f4").tobytes(), "float32", [8])
    assert enc.manifest["format"] == 2 and enc.manifest["codec"] == "segmented"


def test_config_json_roundtrip():
    cfg = SegmentedConfig(level=9, strategy="level", layout="bytes", delta="xor", lossy=LossyConfig("kbit", 4))
    assert SegmentedConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("kind,bits,tol", [("float16", 8, 1e-3), ("bfloat16", 8, 1e-2), ("kbit", 6, 0.05)])
def test_lossy_encodings_are_opt_in_and_marked(kind, bits, tol):
    rng = np.random.default_rng(2)
    vals = rng.standard_normal(3000).astype("<f4")
    raw = vals.tobytes()
    lossless, _ = roundtrip(raw, "float32", [3000])
    assert lossless.manifest["lossy"] is None
    enc, out = roundtrip(raw, "float32", [3000], config=SegmentedConfig(lossy=LossyConfig(kind, bits)))
    assert enc.manifest["lossy"]["kind"] == kind
    got = np.frombuffer(out, "<f4")
    assert len(out) == len(raw) and out != raw
    assert float(np.sqrt(np.mean((got - vals) ** 2))) < tol * float(np.std(vals))  # RMS error
    assert sum(enc.manifest["sizes"]) < sum(lossless.manifest["sizes"])


def test_lossy_refuses_integer_tensors():
    with pytest.raises(CodecError, match="applies to float tensors, not int64"):
        encode_tensor(bytes(80), "int64", [10], config=SegmentedConfig(lossy=LossyConfig("float16")))


@settings(max_examples=40, deadline=None)
@given(words=st.lists(st.integers(0, 2**64 - 1), max_size=80), size=st.sampled_from([1, 2, 4, 8]),
       small=st.booleans())
def test_byteclass_packing_is_inverse(words, size, small):
    from modelhub.storage.byteclass import join_byteclass, split_byteclass

    w = np.array(words, dtype=np.uint64) >> np.uint64(50 if small else 0)
    w = (w & np.uint64(2 ** (8 * size) - 1)).astype(UINT[size])
    assert np.array_equal(join_byteclass(split_byteclass(w), len(w), size), w)


def test_small_deltas_use_byteclass_packing_and_roundtrip():
    rng = np.random.default_rng(4)
    a = (rng.standard_normal(4096) * 0.02).astype("<f4")
    b = (a + rng.standard_normal(4096).astype("<f4") * np.float32(1e-5)).astype("<f4")
    enc, out = roundtrip(b.tobytes(), "float32", [4096], base_raw=a.tobytes(), base_hash="e" * 64)
    assert out == b.tobytes()
    assert enc.manifest["packing"] == "byteclass" and len(enc.manifest["segments"]) == 9
    store = store_of(enc)
    counts = enc.manifest["segments"][0]
    codings = segment_codings(enc.manifest)
    bad = bytearray(decompress_segment(store[counts], counts, 4096, codings[0]))
    bad[0] = 9  # more significant bytes than a float32 has
    store[counts] = zstandard.ZstdCompressor().compress(bytes(bad))
    manifest = dict(enc.manifest, codings=["zstd"] + codings[1:])
    with pytest.raises(CorruptBlobError, match="byte-class counts exceed the element size"):
        decode_tensor(manifest, store.__getitem__, len(b.tobytes()), base=lambda h: a.tobytes())


def test_noise_segments_are_stored_raw_and_old_manifests_without_codings_decode():
    rng = np.random.default_rng(6)
    raw = (rng.standard_normal(5000) * 0.05).astype("<f4").tobytes()
    enc, out = roundtrip(raw, "float32", [5000])
    assert out == raw
    # the exponent compresses; the top mantissa bits are noise at their width, so stored as
    # bare 7-bit fields (bits7.py); the two low mantissa bytes are noise
    assert enc.manifest["codings"] == ["zstd", "raw", "bits7", "raw", "raw"]
    # a manifest written before codings existed: every segment a zstd frame, no "codings" key
    blobs = store_of(enc)
    frames = [zstandard.ZstdCompressor(level=3).compress(decompress_segment(blobs[h], h, n, c))
              for h, c, n in zip(enc.manifest["segments"], enc.manifest["codings"], [5000, 625, 5000, 5000, 5000])]
    manifest = {k: v for k, v in enc.manifest.items() if k != "codings"}
    manifest["segments"] = [content_hash(f) for f in frames]
    manifest["sizes"] = [len(f) for f in frames]
    assert decode_tensor(manifest, dict(zip(manifest["segments"], frames)).__getitem__, len(raw)) == raw
    with pytest.raises(CodecError, match="unknown segment coding 'lz4'"):
        decode_tensor(dict(enc.manifest, codings=["lz4"] * 5), store_of(enc).__getitem__, len(raw))


def test_a_commit_stores_noise_segments_raw_judged_from_a_spread_sample():
    """The commit encoding (strategy "level") skips zstd on segments whose sampled entropy says
    noise, and still compresses a segment that is noise only in its first part."""
    from modelhub.storage.segmented import looks_noisy
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    half = noise[: 1 << 19] + bytes(1 << 19)     # random first half, zeros after: compressible
    assert looks_noisy(noise) and not looks_noisy(half) and not looks_noisy(bytes(100))
    raw = (rng.standard_normal(300_000) * 0.02).astype("<f4").tobytes()
    commit = encode_tensor(raw, "float32", [300_000], config=SegmentedConfig(strategy="level", level=1))
    # the exponent (15 binades hold nearly all of it) is packed to 4-bit codes (planepack.py)
    assert commit.manifest["codings"] == ["pack4", "raw", "bits7", "raw", "raw"]
    assert decode_tensor(commit.manifest, store_of(commit).__getitem__, len(raw)) == raw


def _tuned_calls(monkeypatch) -> list[int]:
    """The sizes of what the archive's optimal parser compresses, from here on."""
    from modelhub.storage import segmented

    seen: list[int] = []
    real = segmented._tuned_compressor

    class Counting:
        def __init__(self) -> None:
            self.cctx = real()

        def compress(self, data) -> bytes:
            seen.append(len(data))
            return self.cctx.compress(data)

        def compressobj(self):   # the samples: not counted
            return self.cctx.compressobj()

    monkeypatch.setattr(segmented, "_tuned_compressor", Counting)
    return seen


def test_the_archive_sizes_the_optimal_parser_on_a_sample_where_packed_planes_are_as_small(monkeypatch):
    """bfloat16 N(0, 0.02) weights (16 MB): the exponent plane packs to 4-bit codes and the top
    mantissa bits are bare bits, both smaller than the optimal parser's frames, which then runs on
    samples of each, never on a whole plane: the same encoding as running it whole."""
    rng = np.random.default_rng(0)
    raw = (rng.standard_normal(8 << 20).astype("<f4") * 0.02).view("<u4")
    raw = (raw >> 16).astype("<u2").tobytes()   # bfloat16 by truncation
    seen = _tuned_calls(monkeypatch)
    enc = encode_tensor(raw, "bfloat16", [8192, 1024])
    assert enc.manifest["codings"] == ["pack4", "raw", "bits7"]
    assert seen == []
    monkeypatch.setattr("modelhub.storage.segmented._TUNED_SAMPLE_MIN", 1 << 40)   # always whole
    assert encode_tensor(raw, "bfloat16", [8192, 1024]).manifest == enc.manifest


def test_the_archive_runs_the_optimal_parser_whole_where_its_sample_finds_repeats(monkeypatch):
    """A plane of few values that repeats itself (a tensor tiled from one block) packs to 4-bit
    codes, but zstd's matches store it in far less: the sample shows that, and the whole plane
    goes through the optimal parser."""
    rng = np.random.default_rng(1)
    block = (rng.standard_normal(32 << 10).astype("<f4") * 0.02).view("<u4")
    raw = np.tile((block >> 16).astype("<u2"), 256).tobytes()   # 16 MB of bfloat16
    seen = _tuned_calls(monkeypatch)
    enc = encode_tensor(raw, "bfloat16", [8192, 1024])
    assert enc.manifest["codings"][0] == "zstd"
    assert (8 << 20) in seen   # the whole exponent plane (8 Mi elements)
