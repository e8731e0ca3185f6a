"""fsck finds and names damage; --repair removes leftovers; gc keeps everything referenced."""
from __future__ import annotations

import json
import os
import time

import pytest
import torch

from helpers import assert_bit_exact, tiny_cnn
from modelhub.errors import DiskFullError, IntegrityError


def _age(repo, seconds: float = 7200) -> None:
    old = time.time() - seconds
    for blob in repo.store:
        os.utime(repo.store.path_of(blob), (old, old))


def test_clean_repository_passes_deep_fsck(repo) -> None:
    repo.commit(tiny_cnn(), name="m", message="a", files={"a.txt": b"x"})
    report = repo.fsck(deep=True)
    assert report.ok and report.problems == () and report.tensors_checked == 8 and report.versions_checked == 1


def test_missing_and_corrupt_blobs_are_errors_naming_the_versions(repo, cli) -> None:
    repo.commit({"a": torch.randn(50), "b": torch.randn(50)}, name="m", message="a")
    repo.commit({"a": torch.randn(50), "b": torch.randn(50)}, name="n", message="b")
    ck = {v.model: v for v in repo.log()}
    with repo.catalog.read() as con:
        rows = con.execute(
            "SELECT st.tensor_hash, td.encoding FROM snapshot_tensors st JOIN tensor_data td USING (tensor_hash) "
            "WHERE st.version_id = ? ORDER BY st.name", [ck["m"].id]).fetchall()
    from modelhub.storage.tensors import manifest_blobs
    blob_a = manifest_blobs(json.loads(rows[0][1]))[0]
    blob_b = manifest_blobs(json.loads(rows[1][1]))[0]
    repo.store.delete(blob_a)
    path = repo.store.path_of(blob_b)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip every bit of the last byte: guaranteed to differ
    path.write_bytes(bytes(data))
    report = repo.fsck()
    kinds = {(p.kind, p.subject): p for p in report.errors}
    assert kinds[("missing_blob", blob_a)].versions == ("m@1",)
    assert kinds[("corrupt_blob", blob_b)].versions == ("m@1",)
    code, out, err = cli("fsck", "--repo", str(repo.root))
    assert code == 65 and "missing_blob" in out and "corrupt_blob" in out
    assert "2 error(s) found; restore the affected versions from a remote" in err


def test_repair_removes_orphans_and_temp_files_but_never_referenced_blobs(repo) -> None:
    repo.commit(tiny_cnn(), name="m", message="a")
    orphan = repo.store.put(b"left behind by a crashed writer")
    tmp = repo.paths.objects / "ab" / ".tmp-xyz"
    tmp.parent.mkdir(exist_ok=True)
    tmp.write_bytes(b"partial")
    report = repo.fsck()
    assert report.ok and {p.kind for p in report.problems} == {"orphan_blob", "temp_file"}
    repaired = repo.fsck(repair=True)
    assert all(p.repaired for p in repaired.problems)
    assert not repo.store.has(orphan) and not tmp.exists()
    assert repo.fsck().problems == ()
    assert_bit_exact(repo.checkout("m").state_dict, tiny_cnn().state_dict())


def test_gc_removes_only_unreferenced_old_blobs(repo) -> None:
    repo.commit(tiny_cnn(), name="m", message="a", files={"notes.txt": b"keep me"})
    repo.add([_write(repo.root / "staged.txt", b"staged")])
    young = repo.store.put(b"young orphan")
    _age(repo)
    old = repo.store.put(b"old orphan")
    os.utime(repo.store.path_of(old), (0, 0))
    young2 = repo.store.put(b"very young orphan")
    dry = repo.gc(grace_s=3600, dry_run=True)
    assert (dry.removed_blobs, dry.dry_run) == (2, True) and repo.store.has(old)
    report = repo.gc(grace_s=3600)
    assert report.removed_blobs == 2 and report.kept_young_blobs == 1
    assert not repo.store.has(old) and not repo.store.has(young) and repo.store.has(young2)
    assert repo.fsck(deep=True).ok
    assert repo.files("m") == {"notes.txt": b"keep me"}
    assert repo.staged() == [("staged.txt", 6)]
    assert_bit_exact(repo.checkout("m").state_dict, tiny_cnn().state_dict())


def test_gc_cli(repo, cli) -> None:
    repo.commit(tiny_cnn(), name="m", message="a")
    repo.store.put(b"orphan")
    code, out, _ = cli("gc", "--now", "--repo", str(repo.root))
    assert code == 0 and out.startswith("removed 1 blobs")
    assert json.loads(cli("gc", "--json", "--now", "--repo", str(repo.root))[1])["removed_blobs"] == 0


def test_disk_full_during_commit_leaves_the_repository_unchanged(repo, monkeypatch) -> None:
    repo.commit(tiny_cnn(0), name="m", message="a")
    before = repo.stats()
    import modelhub.storage.atomic as atomic
    real_write, calls = os.write, {"n": 0}

    def full_disk(fd, data):   # blob bytes go to their temp files with os.write
        if not os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1].startswith(".tmp-"):
            return real_write(fd, data)
        calls["n"] += 1
        if calls["n"] >= 3:  # the third blob hits a full disk half way
            real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(atomic.os, "write", full_disk)
    with pytest.raises(DiskFullError, match="no space left on the device while writing .*free some space"):
        repo.commit(tiny_cnn(1), name="m", message="b")
    monkeypatch.undo()
    after = repo.stats()
    assert (after.n_versions, after.n_tensors, after.stored_bytes) == (before.n_versions, before.n_tensors, before.stored_bytes)
    assert not list(repo.paths.objects.glob("*/.tmp-*"))
    report = repo.fsck()
    assert report.ok  # blobs written before the failure are orphans (warnings), never errors
    repo.commit(tiny_cnn(1), name="m", message="b")  # and the same commit succeeds once space is back
    assert_bit_exact(repo.checkout("m").state_dict, tiny_cnn(1).state_dict())


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_gc_refuses_to_run_on_malformed_manifests(repo) -> None:
    repo.commit(tiny_cnn(), name="m", message="a")
    with repo.catalog.write() as con:
        con.execute("UPDATE tensor_data SET encoding = 'garbage' WHERE tensor_hash = (SELECT min(tensor_hash) FROM tensor_data)")
    n_blobs = len(list(repo.store))
    with pytest.raises(IntegrityError, match="have malformed manifests, so gc cannot tell what is garbage"):
        repo.gc(grace_s=0)
    assert len(list(repo.store)) == n_blobs


def test_stats_count_live_blobs_and_report_what_gc_can_reclaim(repo) -> None:
    repo.commit(tiny_cnn(), name="m", message="a")
    live = repo.stats()
    orphans = [repo.store.put(os.urandom(1000) + bytes([i])) for i in range(3)]
    with repo.catalog.write() as con:  # as a superseded encoding would be: listed, but unreferenced
        con.executemany("INSERT INTO objects VALUES (?, ?)", [[h, 1001] for h in orphans])
    stats = repo.stats()
    assert (stats.stored_bytes, stats.n_objects, stats.reclaimable_bytes) == (live.stored_bytes, live.n_objects, 3003)
    repo.gc(grace_s=0)
    assert repo.stats().reclaimable_bytes == 0 and repo.stats().stored_bytes == live.stored_bytes


def test_fsck_groups_harmless_leftovers_by_kind(repo, cli) -> None:
    repo.commit(tiny_cnn(), name="m", message="a")
    for i in range(5):
        repo.store.put(b"orphan %d" % i)
    code, out, _ = cli("fsck", "--repo", str(repo.root))
    assert code == 0
    assert "orphan_blob  5 items" in out and out.count("orphan_blob") == 1


def test_gc_drops_half_written_feature_chunks_and_on_request_the_whole_cache(repo) -> None:
    import numpy as np
    from modelhub.engine.features import FeatureStore

    store = FeatureStore(repo.paths.features)
    good = store.write_chunk("p" * 64, "ds1", "float32", 0, np.ones((4, 3), dtype=np.float32))
    half = good.path.with_name("r0000000004-0000000008.npy")   # a crash between .npy and its manifest
    half.write_bytes(good.path.read_bytes())
    store.save_meta("profile", {"measured": True})
    with repo.catalog.write() as con:
        con.execute("INSERT INTO materializations VALUES (?, 'ds1', 'float32', 0, 4, 'x', 1, 'c', now())", ["p" * 64])
    assert repo.gc(grace_s=3600).removed_feature_files == 0       # young: may be a write in flight
    report = repo.gc(grace_s=0)
    assert report.removed_feature_files == 1 and not half.exists()
    assert store.read("p" * 64, "ds1", "float32", 0, 4).shape == (4, 3)   # the complete chunk is kept
    report = repo.gc(grace_s=0, features=True)
    assert report.removed_feature_files == 2 and not good.path.exists()   # .npy and .json
    assert store.stored_records("p" * 64, "ds1", "float32") == 0
    assert store.load_meta("profile") == {"measured": True}              # planner measurements stay
    with repo.catalog.read() as con:
        assert con.execute("SELECT count(*) FROM materializations").fetchone()[0] == 0


# -- gc against writers that stage blobs before taking the lock (issue 16, item 1) -----------
def _digits_npz(path, seed: int = 0):
    import numpy as np
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.standard_normal((20, 1, 4, 4)).astype(np.float32), y=rng.integers(0, 3, 20))
    return path


def test_gc_spares_an_old_orphan_blob_that_data_add_reuses(repo, tmp_path, monkeypatch) -> None:
    data = _digits_npz(tmp_path / "a.npz")
    real_write = repo.catalog.write

    def killed(*a, **k):  # an earlier `dlv data add` killed after its blobs, before its rows
        raise KeyboardInterrupt

    monkeypatch.setattr(repo.catalog, "write", killed)
    with pytest.raises(KeyboardInterrupt):
        repo.data_add("digits", [data])
    orphans = sorted(repo.store)
    assert len(orphans) == 2
    _age(repo)                       # older than gc's grace period
    reports = []

    def gc_between(*a, **k):         # a `dlv gc` runs after the new add wrote its blobs, before its rows
        monkeypatch.setattr(repo.catalog, "write", real_write)
        reports.append(repo.gc())    # default grace
        return real_write(*a, **k)

    monkeypatch.setattr(repo.catalog, "write", gc_between)
    repo.data_add("digits", [data])  # reuses both orphans
    assert reports[0].removed_blobs == 0 and reports[0].kept_young_blobs == 2  # the reuse refreshed them
    assert sorted(repo.store) == orphans
    assert repo.fsck(deep=True).ok and repo.dataset("digits").n == 20


def test_data_add_rewrites_a_blob_that_gc_removed_before_it_took_the_lock(repo, tmp_path, monkeypatch) -> None:
    data = _digits_npz(tmp_path / "a.npz")
    real_write = repo.catalog.write

    def gc_first(*a, **k):   # a gc collected the staged blobs in the instant before our lock
        for blob in list(repo.store):
            repo.store.delete(blob)
        return real_write(*a, **k)

    monkeypatch.setattr(repo.catalog, "write", gc_first)
    repo.data_add("digits", [data])
    monkeypatch.setattr(repo.catalog, "write", real_write)
    assert len(list(repo.store)) == 2
    assert repo.fsck(deep=True).ok and repo.dataset("digits").n == 20


def test_put_of_a_present_blob_refreshes_its_mtime(repo) -> None:
    blob = repo.store.put(b"shared bytes")
    os.utime(repo.store.path_of(blob), (0, 0))
    assert repo.store.put(b"shared bytes") == blob
    assert repo.store.path_of(blob).stat().st_mtime > 0
    assert repo.gc().removed_blobs == 0 and repo.store.has(blob)
