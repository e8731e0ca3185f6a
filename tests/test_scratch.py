"""A commit's encode temporaries in reused buffers (storage/scratch.py): the same blobs, fewer copies."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from helpers import direct_writes_supported
from modelhub.storage import directio
from modelhub.storage.directio import BufferPool
from modelhub.storage.objects import ObjectStore, PendingBlobs
from modelhub.storage.scratch import EncodeScratch
from modelhub.storage.tensors import commit_config, decode_tensor, encode_tensor

DTYPES = ["float32", "bfloat16", "float16", "float64", "int64", "int32", "int8", "uint8", "bool", "float8_e4m3fn"]


def _raw(dtype: str, n: int, seed: int, kind: str) -> bytes:
    rng = np.random.default_rng(seed)
    if kind == "weights" and dtype in ("float32", "float64", "float16"):
        return (rng.standard_normal(n) * 0.02).astype({"float32": "<f4", "float64": "<f8", "float16": "<f2"}[dtype]).tobytes()
    if kind == "weights" and dtype == "bfloat16":
        return ((rng.standard_normal(n) * 0.02).astype("<f4").view("<u4") >> np.uint32(16)).astype("<u2").tobytes()
    if dtype == "bool":
        return rng.integers(0, 2, n, dtype=np.uint8).tobytes()
    size = {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8, "int64": 8, "int32": 4, "int8": 1, "uint8": 1,
            "float8_e4m3fn": 1}[dtype]
    if kind == "small":   # few distinct values: packed and zstd planes
        return rng.integers(0, 5, n * size, dtype=np.uint8).tobytes()
    return rng.integers(0, 256, n * size, dtype=np.uint8).tobytes()   # noise: raw planes


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from(DTYPES), n=st.integers(1, 40_000), seed=st.integers(0, 2**16),
       kind=st.sampled_from(["weights", "small", "noise"]))
def test_a_commit_encode_with_scratch_gives_the_manifest_and_blobs_it_gives_without(dtype, n, seed, kind):
    raw = _raw(dtype, n, seed, kind)
    shape = [n]   # 1-D: small ones are one zstd frame, as commits store them
    config = commit_config(len(raw), 2)   # a matrix's encoding (segmented), whatever its size
    plain = encode_tensor(raw, dtype, shape, config=config)
    pool = BufferPool()
    scratch = EncodeScratch(pool)
    used = encode_tensor(raw, dtype, shape, config=config, scratch=scratch)
    assert used.manifest == plain.manifest
    assert [bytes(b) for b in used.blobs] == [bytes(b) for b in plain.blobs]
    blobs = {name: bytes(b) for name, b in used.named_blobs()}
    del used
    scratch.release()
    pool.close()
    assert bytes(decode_tensor(plain.manifest, blobs.__getitem__, len(raw))) == raw


def test_a_bfloat16_commit_encodes_its_planes_and_mantissa_blob_in_scratch_buffers():
    """What the scratch saves: the field planes are pooled buffers, and the bits7 blob is written
    over its own plane (one buffer fewer, no copy)."""
    raw = _raw("bfloat16", 200_000, 1, "weights")
    pool = BufferPool()
    scratch = EncodeScratch(pool)
    enc = encode_tensor(raw, "bfloat16", [400, 500], config=commit_config(len(raw), 2), scratch=scratch)
    assert enc.manifest["codings"] == ["pack4", "raw", "bits7"]
    planes = {a.ctypes.data for a in scratch._taken}   # exponent, sign and mantissa planes, packed exponent codes
    assert len(planes) == 4
    mantissa = np.frombuffer(enc.blobs[2], np.uint8).ctypes.data
    sign = np.frombuffer(enc.blobs[1], np.uint8).ctypes.data
    assert mantissa in planes and sign in planes
    assert planes <= {start for start, _ in directio._LENT.values()}   # written from there, no copy
    del enc
    scratch.release()
    assert not planes & {start for start, _ in directio._LENT.values()}
    pool.close()


def test_released_buffers_are_reused_and_one_still_in_use_is_not():
    pool = BufferPool()
    scratch = EncodeScratch(pool)
    a = scratch.empty(3 << 20)
    a[:] = 7
    address = a.ctypes.data
    del a
    scratch.release()
    b = scratch.empty(3 << 20)
    assert b.ctypes.data == address                    # the same mapping, no new pages
    scratch.release()                                  # b is still alive: its mapping is not reused
    b[:] = 9
    c = scratch.empty(3 << 20)
    assert c.ctypes.data != b.ctypes.data and (b == 9).all()
    del c
    scratch.release()
    pool.close()


@pytest.mark.parametrize("size", [(1 << 20) + 5, 2 << 20])
def test_a_blob_in_a_scratch_buffer_is_written_directly_from_it_without_a_copy(tmp_path, monkeypatch, size):
    if not direct_writes_supported(tmp_path):
        pytest.skip("this file system does not open files O_DIRECT")
    monkeypatch.setattr(directio, "_refused", False)

    def no_copy():
        raise AssertionError("the blob was copied into the blob pool")
    monkeypatch.setattr(directio, "_blob_pool", no_copy)
    pool = BufferPool()
    scratch = EncodeScratch(pool)
    blob = scratch.empty(size)
    blob[:] = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8)
    store = ObjectStore(tmp_path / "objects")
    with PendingBlobs() as pending:
        name = store.put(memoryview(blob), pending=pending)
        pending.sync()
    assert store.get(name) == blob.tobytes() and store.path_of(name).stat().st_size == size
    del blob
    scratch.release()
    pool.close()


def test_a_blob_that_is_not_at_a_block_start_of_a_scratch_buffer_is_copied_first(tmp_path, monkeypatch):
    if not direct_writes_supported(tmp_path):
        pytest.skip("this file system does not open files O_DIRECT")
    monkeypatch.setattr(directio, "_refused", False)
    copied = []
    real = directio._blob_pool
    monkeypatch.setattr(directio, "_blob_pool", lambda: copied.append(1) or real())
    pool = BufferPool()
    scratch = EncodeScratch(pool)
    whole = scratch.empty(3 << 20)
    whole[:] = np.random.default_rng(1).integers(0, 256, whole.size, dtype=np.uint8)
    store = ObjectStore(tmp_path / "objects")
    name = store.put(memoryview(whole[5:]))            # not block-aligned: copied into an aligned buffer
    assert copied and store.get(name) == whole[5:].tobytes()
    del whole
    scratch.release()
    pool.close()
