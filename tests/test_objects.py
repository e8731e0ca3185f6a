"""The object store: content addressing, atomic writes, corruption reported by name."""
from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

import pytest
import torch

from modelhub.errors import IntegrityError

from modelhub.storage import atomic, objects
from modelhub.storage.atomic import atomic_write, fsync_dir
from modelhub.storage.errors import CorruptBlobError, MissingBlobError, StorageFullError as DiskFullError
from modelhub.storage.objects import ObjectStore, content_hash


def test_put_get_is_content_addressed(tmp_path) -> None:
    store = ObjectStore(tmp_path)
    h = store.put(b"hello")
    assert h == content_hash(b"hello") and store.put(b"hello") == h
    assert store.get(h) == b"hello" and list(store) == [h]
    assert not list(tmp_path.rglob(".tmp-*"))


def test_corrupt_and_missing_blobs_are_reported_by_name(tmp_path) -> None:
    store = ObjectStore(tmp_path)
    h = store.put(b"payload")
    store.path_of(h).write_bytes(b"tampered")
    with pytest.raises(CorruptBlobError, match=f"object {h[:16]} is corrupt \\(checksum mismatch\\)"):
        store.get(h)
    store.delete(h)
    with pytest.raises(MissingBlobError, match=f"object {h[:16]} is missing"):
        store.get(h)


def test_read_view_maps_large_blobs_reads_small_ones_and_reads_where_mapping_fails(tmp_path, monkeypatch) -> None:
    store = ObjectStore(tmp_path)
    big = bytes(range(256)) * (objects.MAP_MIN_BYTES // 256 + 1)
    small = b"payload"
    hb, hs = store.put(big), store.put(small)
    view = store.read_view(hb)
    assert isinstance(view, memoryview) and isinstance(view.obj, mmap.mmap) and view.readonly
    assert view == big
    assert type(store.read_view(hs)) is bytes and store.read_view(hs) == small

    def refuse(*_a, **_k):
        raise OSError(errno.ENODEV, "No such device")
    monkeypatch.setattr(objects.mmap, "mmap", refuse)
    fallback = store.read_view(hb)
    assert type(fallback) is bytes and fallback == big
    store.delete(hb)
    with pytest.raises(MissingBlobError, match=f"object {hb[:16]} is missing"):
        store.read_view(hb)


@pytest.mark.parametrize("kind", ["folder", "pipe"])
def test_anything_but_a_file_under_a_blob_name_is_a_corrupt_blob(tmp_path, kind) -> None:
    store = ObjectStore(tmp_path)
    h = store.put(b"payload")
    path = store.path_of(h)
    path.unlink()
    if kind == "folder":
        path.mkdir()
    elif hasattr(os, "mkfifo"):
        os.mkfifo(path)   # opened without waiting for a writer that never comes
    else:
        pytest.skip("no named pipes here")
    for read in (store.get, store.read_view, store.verify):
        with pytest.raises(CorruptBlobError, match=f"object {h[:16]} is corrupt \\(not a regular file\\)"):
            read(h)


def test_a_large_blob_is_checked_before_it_is_read_into_memory(tmp_path, monkeypatch) -> None:
    """A damaged file above VERIFY_FIRST_BYTES (a sparse 100 GB one ended a checkout in a
    MemoryError) is found corrupt a chunk at a time, never read whole; an intact one is read."""
    monkeypatch.setattr(objects, "VERIFY_FIRST_BYTES", 1000)
    monkeypatch.setattr(objects, "_VERIFY_CHUNK_BYTES", 256)
    store = ObjectStore(tmp_path)
    good = bytes(range(256)) * 20
    h = store.put(good)
    assert store.get(h) == good
    with open(store.path_of(h), "r+b") as f:
        f.truncate(10 << 20)   # longer and wrong
    monkeypatch.setattr(objects, "_read_to_end", lambda *_a: pytest.fail("a damaged large blob was read whole"))
    with pytest.raises(CorruptBlobError, match=f"object {h[:16]} is corrupt \\(checksum mismatch\\)"):
        store.get(h)


def test_object_names_cannot_escape_the_store(tmp_path) -> None:
    with pytest.raises(CorruptBlobError, match="not a valid object name"):
        ObjectStore(tmp_path).path_of("../../etc/passwd")


def test_atomic_write_leaves_old_content_when_the_write_fails(tmp_path, monkeypatch) -> None:
    target = tmp_path / "f"
    atomic_write(target, b"old")

    def boom(*_a):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError, match="no space left on the device while writing .*free some space"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


@pytest.mark.parametrize("numel", [100, 1 << 20], ids=["read", "mapped"])
def test_checkout_of_a_corrupted_tensor_is_an_integrity_error(repo, monkeypatch, numel) -> None:
    monkeypatch.setenv("DLV_HOT_COPIES", "0")  # the archive path (a hot copy would serve intact weights)
    repo.commit({"w": torch.randn(numel, generator=torch.Generator().manual_seed(0))}, name="m", message="x")
    blob = max(repo.store, key=repo.store.size)  # the tensor's largest blob (segmented codecs write several)
    path = repo.store.path_of(blob)
    assert (repo.store.size(blob) >= objects.MAP_MIN_BYTES) == (numel > 100)   # read_view maps it
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=f"object {blob[:16]} is corrupt"):
        repo.checkout("m")


def test_full_disk_at_fsync_is_a_disk_full_error_and_leaves_no_temp_file(tmp_path, monkeypatch) -> None:
    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic.os, "fsync", full)
    store = ObjectStore(tmp_path / "objects")
    with pytest.raises(DiskFullError, match="no space left on the device") as info:
        store.put(b"payload")
    assert info.value.errno == errno.ENOSPC
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_new_fan_out_folder_is_fsynced_into_its_parent(tmp_path, monkeypatch) -> None:
    synced = []
    real = atomic.fsync_dir
    monkeypatch.setattr(atomic, "fsync_dir", lambda p: (synced.append(p), real(p)))
    store = ObjectStore(tmp_path / "objects")
    h = store.put(b"payload")
    fan_out = store.path_of(h).parent
    # each created folder is made durable in its parent, then the rename in the fan-out folder
    assert synced == [tmp_path, tmp_path / "objects", fan_out]
    synced.clear()
    store.put(b"payload")           # present: nothing written, nothing to sync
    assert synced == []


def test_fsync_dir_reports_io_errors_instead_of_swallowing_them(tmp_path, monkeypatch) -> None:
    def broken(_fd):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(atomic.os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output error"):
        fsync_dir(tmp_path)


def test_deferred_puts_are_fsynced_together_with_their_folders(tmp_path, monkeypatch) -> None:
    from modelhub.storage.objects import PendingBlobs
    files, folders = [], []
    real_file, real_dir = atomic.fsync_file, atomic.fsync_dir
    monkeypatch.setattr(atomic, "fsync_file", lambda p: (files.append(Path(p)), real_file(p)))
    monkeypatch.setattr(atomic, "fsync_dir", lambda p: (folders.append(Path(p)), real_dir(p)))
    store = ObjectStore(tmp_path / "objects")
    store.root.mkdir()
    pending = PendingBlobs()
    names = [store.put(bytes([i]) * 10, pending=pending) for i in range(3)]
    store.put(bytes([0]) * 10, pending=pending)   # the same bytes again: one temp file
    assert files == [] and folders == []          # nothing synced until the batch is
    # nothing is under its name before its bytes are fsynced: a torn file there would be
    # trusted by every later put of the same bytes
    assert not any(store.has(h) for h in names) and len(list(tmp_path.rglob(".tmp-*"))) == 3
    pending.sync()
    assert [store.get(h) for h in names] == [bytes([i]) * 10 for i in range(3)]
    assert sorted(p.parent for p in files) == sorted(store.path_of(h).parent for h in names)
    assert all(p.name.startswith(".tmp-") for p in files)   # fsynced before the rename
    # each blob's fan-out folder (its rename) and the store's root (the new fan-out folders)
    assert set(folders) == {store.path_of(h).parent for h in names} | {store.root}
    assert len(pending) == 0 and not list(tmp_path.rglob(".tmp-*"))


def test_large_deferred_puts_are_fsynced_early_and_renamed_only_at_the_sync(tmp_path, monkeypatch) -> None:
    from modelhub.storage import objects
    from modelhub.storage.objects import PendingBlobs
    early, batch = [], []
    real = atomic.fsync_file
    monkeypatch.setattr(objects, "fsync_file", lambda p: (early.append(Path(p)), real(p)))
    monkeypatch.setattr(atomic, "fsync_file", lambda p: (batch.append(Path(p)), real(p)))
    monkeypatch.setattr(PendingBlobs, "EARLY_SYNC_BYTES", 100)
    store = ObjectStore(tmp_path / "objects")
    pending = PendingBlobs()
    large = [store.put(bytes([i]) * 500, pending=pending) for i in range(2)]
    small = store.put(b"small", pending=pending)
    assert not any(store.has(h) for h in large + [small])   # fsynced or not, renamed only at the sync
    pending.sync()
    assert [store.get(h) for h in large] == [bytes([i]) * 500 for i in range(2)] and store.get(small) == b"small"
    assert sorted(p.parent for p in early) == sorted(store.path_of(h).parent for h in large)
    assert [p.parent for p in batch if p.name.startswith(".tmp-")] == [store.path_of(small).parent]
    assert not list(tmp_path.rglob(".tmp-*"))


def test_a_failed_early_fsync_is_done_again_at_the_sync_and_discard_removes_the_temps(tmp_path, monkeypatch) -> None:
    from modelhub.storage import objects
    from modelhub.storage.objects import PendingBlobs

    def broken(_path):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(objects, "fsync_file", broken)
    monkeypatch.setattr(PendingBlobs, "EARLY_SYNC_BYTES", 100)
    store = ObjectStore(tmp_path / "objects")
    with PendingBlobs() as pending:
        kept = store.put(b"k" * 500, pending=pending)
        pending.sync()   # the batch fsyncs it again (for real here): it is published
    assert store.get(kept) == b"k" * 500
    with PendingBlobs() as pending:
        store.put(b"d" * 500, pending=pending)
        assert len(list(tmp_path.rglob(".tmp-*"))) == 1
    assert not list(tmp_path.rglob(".tmp-*"))   # a failed command's temps go, early fsync or not


def test_a_full_disk_at_a_deferred_sync_is_a_disk_full_error(tmp_path, monkeypatch) -> None:
    from modelhub.storage.objects import PendingBlobs
    store = ObjectStore(tmp_path / "objects")
    pending = PendingBlobs()
    store.put(b"payload", pending=pending)

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(DiskFullError, match="no space left on the device"):
        pending.sync()


def test_a_caller_computed_name_is_used_and_a_wrong_one_reads_as_damage(tmp_path) -> None:
    store = ObjectStore(tmp_path)
    assert store.put(b"abc", blob_hash=content_hash(b"abc")) == content_hash(b"abc")
    wrong = content_hash(b"other")
    store.put(b"abc", blob_hash=wrong)
    with pytest.raises(CorruptBlobError, match="checksum mismatch"):
        store.get(wrong)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16", "int64", "uint8"])
def test_every_codec_names_its_blobs_in_the_order_it_returns_them(dtype) -> None:
    import numpy as np
    from modelhub.storage import tensors as codec
    from modelhub.storage.lossy import LossyConfig
    from modelhub.storage.segmented import SegmentedConfig
    from modelhub.storage.whole import ZstdWholeConfig
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, 4096, dtype=np.uint8).tobytes()
    if dtype == "float32":   # finite values: the lossy encodings below quantize them
        raw = rng.standard_normal(1024).astype("<f4").tobytes()
    base = bytearray(raw)
    base[::7] = b"\0" * len(base[::7])
    n = 4096 // codec.DTYPE_SIZES[dtype]
    configs = [ZstdWholeConfig(), SegmentedConfig(), codec.commit_config()]
    if dtype == "float32":
        configs.append(SegmentedConfig(lossy=LossyConfig(kind="kbit", bits=4)))
    encodings = [codec.encode_tensor(raw, dtype, [n], config=c) for c in configs]
    encodings.append(codec.encode_delta_best(raw, dtype, [n], base_raw=bytes(base), base_hash="0" * 64))
    for enc in encodings:
        assert [h for h, _ in enc.named_blobs()] == [content_hash(b) for b in enc.blobs]
