"""Checkouts written past the page cache (modelhub.storage.directio): the same bytes, whichever way."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from modelhub import weightfiles
from helpers import direct_writes_supported
from modelhub.storage import directio
from modelhub.errors import InputError
from modelhub.storage import tensors as storage_tensors
from modelhub.storage.errors import CodecError, StorageFullError
from modelhub.storage.objects import ObjectStore, PendingBlobs

ALIGN = directio.ALIGN


def test_block_span_is_the_whole_blocks_inside_a_range():
    assert directio.block_span(0, 3 * ALIGN) == (0, 3 * ALIGN)
    assert directio.block_span(10, 3 * ALIGN) == (ALIGN, 3 * ALIGN)
    assert directio.block_span(ALIGN - 1, ALIGN + 2) == (ALIGN, 2 * ALIGN)
    start, end = directio.block_span(5, ALIGN)   # within two blocks, none whole
    assert start >= end


def test_a_pool_places_each_buffer_at_its_phase_and_reuses_it():
    pool = directio.BufferPool()
    buf = pool.take(10_000, phase=123)
    assert buf.nbytes == 10_000 and buf.flags.writeable and buf.ctypes.data % ALIGN == 123
    mapping = buf.ctypes.data - 123
    pool.give(buf)
    del buf
    again = pool.take(9_000, phase=7)
    assert again.ctypes.data == mapping + 7
    pool.give(again)
    pool.close()
    with pytest.raises(ValueError, match=f"phase {ALIGN} is not within a block"):
        pool.take(10, phase=ALIGN)


def test_a_buffer_given_back_while_something_still_uses_it_is_not_handed_out_again():
    """Anything made from a buffer (a slice, a memoryview, an array over that) keeps it from
    reuse: what it reads stays what was written, and nothing reads unmapped memory."""
    pool = directio.BufferPool()
    buf = pool.take(4096)
    buf[:] = 1
    kept = np.frombuffer(memoryview(buf[100:200]), dtype=np.uint8)   # numpy holds no buffer export
    pool.give(buf)
    del buf
    other = pool.take(4096)
    other[:] = 2
    assert (kept == 1).all() and other.ctypes.data != kept.ctypes.data - 100
    pool.give(other)
    del other
    pool.close()                     # the buffer still in use stays mapped for it
    assert (kept == 1).all()
    address = kept.ctypes.data - 100
    del kept
    again = pool.take(4096)           # free now: the pool may hand it out (or make a new one)
    assert again.nbytes == 4096 and isinstance(address, int)
    pool.give(again)
    pool.close()


def _tensors(sizes: list[int]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(len(sizes))
    return {f"t{i:02d}": torch.randint(0, 256, (n,), dtype=torch.uint8, generator=g) for i, n in enumerate(sizes)}


# sizes that put tensor edges everywhere within blocks: smaller than a block, one block exactly,
# straddling two, spanning many, after an odd offset
SIZES = [5, ALIGN, 3 * ALIGN + 17, 1, 2 * ALIGN - 3, 10 * ALIGN + 1, 7, 4 * ALIGN]


def _model_and_writer(tmp_path: Path, *, direct: bool):
    """The tensors of SIZES saved by safetensors as want.safetensors, and a writer of got.safetensors."""
    sd = _tensors(SIZES)
    save_file(sd, tmp_path / "want.safetensors", metadata={"k": "v"})
    specs = [weightfiles.OutTensor(k, "uint8", tuple(t.shape), t.numel()) for k, t in sd.items()]
    return sd, weightfiles.SafetensorsWriter(tmp_path / "got.safetensors", specs, {"k": "v"}, direct=direct)


def _publish_and_compare(w: weightfiles.SafetensorsWriter, tmp_path: Path) -> None:
    w.finish()
    w.publish()
    assert (tmp_path / "got.safetensors").read_bytes() == (tmp_path / "want.safetensors").read_bytes()


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("through", ["tensor_buffer", "write"])
def test_a_file_written_tensor_by_tensor_is_what_safetensors_writes(tmp_path, monkeypatch, direct, through):
    monkeypatch.setattr(directio, "DIRECT_MIN_BYTES", 0)
    sd, w = _model_and_writer(tmp_path, direct=direct)
    if direct and direct_writes_supported(tmp_path):
        assert w.writes_direct
    if not direct:
        assert not w.writes_direct
    for name in reversed(list(sd)):   # any order
        data = sd[name].numpy().tobytes()
        if through == "write":
            w.write(name, data)
        else:
            with w.tensor_buffer(name) as buf:
                buf[:] = data
    _publish_and_compare(w, tmp_path)


def test_a_file_system_that_refuses_direct_writes_gets_them_through_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(directio, "DIRECT_MIN_BYTES", 0)
    if not direct_writes_supported(tmp_path):
        pytest.skip("this file system does not open files O_DIRECT")
    sd, w = _model_and_writer(tmp_path, direct=True)
    real = os.pwrite
    refused = []

    def pwrite(fd, data, pos):
        if fd == w.direct_fd:
            refused.append(pos)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, data, pos)
    monkeypatch.setattr(directio.os, "pwrite", pwrite)
    for name, t in sd.items():
        with w.tensor_buffer(name) as buf:
            buf[:] = t.numpy().tobytes()
    _publish_and_compare(w, tmp_path)
    assert len(refused) == 1 and not w.writes_direct   # refused once, then never tried again


def test_a_full_disk_during_a_direct_write_fails_the_write_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(directio, "DIRECT_MIN_BYTES", 0)
    if not direct_writes_supported(tmp_path):
        pytest.skip("this file system does not open files O_DIRECT")
    sd, w = _model_and_writer(tmp_path, direct=True)
    (tmp_path / "want.safetensors").unlink()
    real = os.pwrite

    def pwrite(fd, data, pos):
        if fd == w.direct_fd:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, pos)
    monkeypatch.setattr(directio.os, "pwrite", pwrite)
    with pytest.raises(OSError, match="No space left on device"):
        with w.tensor_buffer("t05") as buf:
            buf[:] = sd["t05"].numpy().tobytes()
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_direct_writes_are_off_when_the_environment_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(directio, "DIRECT_MIN_BYTES", 0)
    monkeypatch.setenv("DLV_DIRECT_WRITES", "off")
    w = weightfiles.SafetensorsWriter(tmp_path / "w.safetensors", [weightfiles.OutTensor("a", "uint8", (8,), 8)], None,
                                      direct=True)
    assert not w.writes_direct
    w.abort()


def test_small_files_are_written_through_the_cache(tmp_path):
    w = weightfiles.SafetensorsWriter(tmp_path / "w.safetensors", [weightfiles.OutTensor("a", "uint8", (8,), 8)], None,
                                      direct=True)
    assert w.size < directio.DIRECT_MIN_BYTES and not w.writes_direct
    w.abort()


def test_a_write_of_the_wrong_size_is_refused(tmp_path):
    w = weightfiles.SafetensorsWriter(tmp_path / "w.safetensors", [weightfiles.OutTensor("a", "uint8", (8,), 8)], None)
    with pytest.raises(InputError, match="tensor 'a' is 8 bytes; got 7"):
        w.write("a", bytes(7))
    w.abort()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int64])
def test_decoding_into_a_buffer_gives_the_bytes_decoding_returns(dtype):
    g = torch.Generator().manual_seed(3)
    base = (torch.randn(64, 96, generator=g) * 0.02).to(dtype) if dtype.is_floating_point else \
        torch.randint(-9, 9, (64, 96), generator=g, dtype=dtype)
    raw = base.contiguous().view(torch.uint8).numpy().tobytes()
    dname = str(dtype).removeprefix("torch.")
    later = (base.float() + 0.001).to(dtype) if dtype.is_floating_point else base + 1
    later_raw = later.contiguous().view(torch.uint8).numpy().tobytes()
    encodings = [storage_tensors.encode_tensor(raw, dname, [64, 96]),                       # segmented
                 storage_tensors.encode_tensor(raw, dname, [64, 96], codec="zstd-whole"),   # format 1
                 storage_tensors.encode_delta_best(later_raw, dname, [64, 96], base_raw=raw, base_hash="b" * 80)]
    for enc, want in zip(encodings, [raw, raw, later_raw]):
        blobs = dict(enc.named_blobs())
        plain = storage_tensors.decode_tensor(enc.manifest, blobs.__getitem__, len(want), base=lambda _h: raw)
        out = bytearray(len(want))
        got = storage_tensors.decode_tensor(enc.manifest, blobs.__getitem__, len(want), base=lambda _h: raw, out=out)
        assert bytes(plain) == want and bytes(out) == want and bytes(got) == want, enc.manifest["codec"]


def test_decoding_into_a_buffer_of_the_wrong_size_is_refused():
    raw = bytes(range(64))
    enc = storage_tensors.encode_tensor(raw, "uint8", [64])
    blobs = dict(enc.named_blobs())
    with pytest.raises(CodecError, match="out must be 64 writable bytes, not 63 bytes"):
        storage_tensors.decode_tensor(enc.manifest, blobs.__getitem__, 64, out=bytearray(63))
    with pytest.raises(CodecError, match="out must be 64 writable bytes, not 64 read-only bytes"):
        storage_tensors.decode_tensor(enc.manifest, blobs.__getitem__, 64, out=bytes(64))


def _model() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return {"embed": (torch.randn(300, 97, generator=g) * 0.02).to(torch.bfloat16),
            "proj": torch.randn(129, 65, generator=g), "bias": torch.randn(65, generator=g),
            "steps": torch.arange(3, dtype=torch.int64)}


def _spy_writers(monkeypatch) -> list:
    made = []
    real = weightfiles.SafetensorsWriter.finish

    def finish(self):
        made.append(self.writes_direct)
        real(self)
    monkeypatch.setattr(weightfiles.SafetensorsWriter, "finish", finish)
    return made


@pytest.mark.parametrize("hot_cap", ["0", "1G"])
def test_a_cold_checkout_is_written_directly_unless_its_hot_copy_is_made_from_it(repo, tmp_path, monkeypatch, hot_cap):
    """With hot copies on and the model under their cap, the hot copy is copied from the file just
    written, so that file goes through the page cache; otherwise it is written past it."""
    monkeypatch.setattr(directio, "DIRECT_MIN_BYTES", 0)
    if not direct_writes_supported(tmp_path):
        pytest.skip("this file system does not open files O_DIRECT")
    sd = _model()
    save_file(sd, tmp_path / "w.safetensors", metadata={"format": "pt"})
    repo.set_config("hotcopy.max_bytes", hot_cap)
    v = repo.commit(tmp_path / "w.safetensors", name="m", message="one")
    repo.hot.path(v.id).unlink(missing_ok=True)
    made = _spy_writers(monkeypatch)
    repo.write_checkout("m", tmp_path / "out.safetensors")
    assert (tmp_path / "out.safetensors").read_bytes() == (tmp_path / "w.safetensors").read_bytes()
    assert made == [hot_cap == "0"]
    assert repo.hot.path(v.id).exists() == (hot_cap != "0")


def test_a_sharded_checkout_written_directly_is_the_same_shards(repo, tmp_path, monkeypatch):
    monkeypatch.setattr(directio, "DIRECT_MIN_BYTES", 0)
    monkeypatch.setenv("DLV_HOT_COPIES", "0")
    if not direct_writes_supported(tmp_path):
        pytest.skip("this file system does not open files O_DIRECT")
    sd = _model()
    src = tmp_path / "ckpt"
    src.mkdir()
    save_file({k: sd[k] for k in ("embed", "proj")}, src / "model-00001-of-00002.safetensors")
    save_file({k: sd[k] for k in ("bias", "steps")}, src / "model-00002-of-00002.safetensors")
    repo.commit(src, name="m", message="sharded")
    made = _spy_writers(monkeypatch)
    repo.write_checkout("m", tmp_path / "out")
    assert made == [True, True]
    for f in src.glob("*.safetensors"):
        assert (tmp_path / "out" / f.name).read_bytes() == f.read_bytes()


# -- blobs (storage.atomic.write_temp / atomic_write through directio.write_whole) ---------------

def _blob(n: int) -> bytes:
    return np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.fixture
def direct_blobs(monkeypatch, tmp_path):
    """Every blob of a few bytes or more written directly (where this file system takes it)."""
    if not direct_writes_supported(tmp_path):
        pytest.skip("this file system does not open files O_DIRECT")
    monkeypatch.setattr(directio, "DIRECT_BLOB_BYTES", 16)
    monkeypatch.setattr(directio, "_refused", False)
    written = []
    real = directio._write_padded
    monkeypatch.setattr(directio, "_write_padded", lambda fd, view: written.append(view.nbytes) or real(fd, view))
    return written


@pytest.mark.parametrize("size", [16, ALIGN - 1, ALIGN, 3 * ALIGN + 5])
def test_a_blob_written_directly_reads_back_whole_and_exact(tmp_path, direct_blobs, size):
    store = ObjectStore(tmp_path / "objects")
    data = _blob(size)
    name = store.put(data)                              # atomic_write
    with PendingBlobs() as pending:                     # write_temp, then one batch
        other = store.put(data[::-1], pending=pending)
        pending.sync()
    assert direct_blobs == [size, size]
    assert store.get(name) == data and store.get(other) == data[::-1]
    assert store.path_of(name).stat().st_size == size


def test_a_file_system_that_refuses_direct_blob_writes_gets_them_through_the_cache(tmp_path, direct_blobs, monkeypatch):
    import fcntl

    def refuse(fd, cmd, arg=0):
        if cmd == fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return fcntl_real(fd, cmd, arg)
    fcntl_real = fcntl.fcntl
    monkeypatch.setattr(fcntl, "fcntl", refuse)
    store = ObjectStore(tmp_path / "objects")
    data = _blob(5000)
    assert store.get(store.put(data)) == data
    assert direct_blobs == [] and directio._refused        # not tried again in this process


def test_a_direct_blob_write_the_file_system_rejects_midway_is_written_again_through_the_cache(tmp_path, direct_blobs,
                                                                                            monkeypatch):
    real = directio.pwrite_all

    def partial(fd, view, pos):
        real(fd, view[:ALIGN], pos)                     # one block lands, then the file system objects
        raise OSError(errno.EINVAL, "Invalid argument")
    monkeypatch.setattr(directio, "pwrite_all", partial)
    store = ObjectStore(tmp_path / "objects")
    data = _blob(3 * ALIGN + 5)
    name = store.put(data)
    assert store.get(name) == data and store.path_of(name).stat().st_size == len(data)


def test_a_full_disk_during_a_direct_blob_write_is_a_storage_full_error_and_leaves_no_temp(tmp_path, direct_blobs,
                                                                                           monkeypatch):
    def full(fd, view, pos):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(directio, "pwrite_all", full)
    store = ObjectStore(tmp_path / "objects")
    with pytest.raises(StorageFullError, match="objects"):
        store.put(_blob(5000))
    assert [p for p in (tmp_path / "objects").rglob("*") if p.is_file()] == []
