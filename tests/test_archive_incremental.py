"""`dlv archive` measures only what is new: sizes measured by earlier archives and dry runs are
kept in the catalog (table encoding_sizes, per encoder id) and steer the plan; what is written
is encoded again and verified, so a wrong size can cost bytes but never a tensor."""
from __future__ import annotations

import pytest
import torch
from helpers import assert_bit_exact, tiny_cnn

import modelhub
from modelhub.errors import LockTimeoutError
from modelhub.repo import archive as archive_mod
from modelhub.repo import tensorstore
from modelhub.repo.archive import archive, archive_dry_run


def _snapshots(n: int, seed: int) -> list[dict]:
    """Deterministic pseudo-training of tiny_cnn: ``n`` state dicts, small steps apart."""
    m = tiny_cnn(0)
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 1e-3)
        out.append({k: v.clone() for k, v in m.state_dict().items()})
    return out


def _chain(repo, snaps: list[dict]) -> None:
    for i, sd in enumerate(snaps):
        repo.commit(sd, name="cnn", message=f"epoch {i}")


def _size_rows(repo) -> list[tuple]:
    with repo.catalog.read() as con:
        return con.execute("SELECT tensor, base, encoder, bytes FROM encoding_sizes "
                           "ORDER BY ALL").fetchall()


class _Counted:
    """Counts the archive's encodes and decodes (patched over the module's functions)."""

    def __init__(self, monkeypatch) -> None:
        self.whole = self.delta = self.loads = 0
        whole, delta, load = archive_mod._encode_whole, archive_mod._encode_delta, archive_mod.load_tensor

        def count_whole(*a, **k):
            self.whole += 1
            return whole(*a, **k)

        def count_delta(*a, **k):
            self.delta += 1
            return delta(*a, **k)

        def count_load(*a, **k):
            self.loads += 1
            return load(*a, **k)

        monkeypatch.setattr(archive_mod, "_encode_whole", count_whole)
        monkeypatch.setattr(archive_mod, "_encode_delta", count_delta)
        monkeypatch.setattr(archive_mod, "load_tensor", count_load)


def test_a_second_archive_with_nothing_new_encodes_and_decodes_nothing(repo, monkeypatch):
    _chain(repo, _snapshots(3, 1))
    first = archive(repo)
    assert first.n_measured > 0 and first.n_known == 0 and first.n_reencoded > 0
    counted = _Counted(monkeypatch)
    again = archive(repo)
    assert (counted.whole, counted.delta, counted.loads) == (0, 0, 0)
    assert again.n_measured == 0 and again.n_known == first.n_measured
    assert again.n_reencoded == 0 and again.stored_after == first.stored_after
    assert again.mst_bytes == first.mst_bytes and again.snapshots == first.snapshots


def test_after_one_more_commit_the_archive_measures_only_its_tensors_and_deltas(repo):
    snaps = _snapshots(4, 2)
    _chain(repo, snaps[:3])
    first = archive(repo)
    _chain(repo, snaps[3:])
    n_new = len(snaps[3])   # every tensor of the new snapshot changed: new whole sizes and deltas
    later = archive(repo)
    assert later.n_measured == 2 * n_new and later.n_known == first.n_measured
    # the plan is the one measuring everything again makes
    fresh = archive(repo, remeasure=True)
    assert fresh.n_known == 0 and fresh.n_measured == later.n_measured + later.n_known
    assert (fresh.stored_after, fresh.mst_bytes, fresh.snapshots) == (later.stored_after, later.mst_bytes,
                                                                      later.snapshots)
    for i, sd in enumerate(snaps):
        assert_bit_exact(repo.checkout(f"cnn@{i + 1}", rebuild_module=False).state_dict, sd)


def test_a_dry_run_records_its_sizes_for_the_archive_that_follows(repo, monkeypatch):
    _chain(repo, _snapshots(3, 3))
    archive_dry_run(repo, [2.0])
    recorded = len(_size_rows(repo))
    counted = _Counted(monkeypatch)
    result = archive(repo, alpha=2.0)
    # nothing is sized again; the deltas the plan writes are encoded once each, to be written
    assert result.n_measured == 0 and result.n_known == recorded > 0
    assert counted.whole == 0 and 0 < counted.delta <= result.n_reencoded + len(_size_rows(repo)) - recorded


def test_a_dry_run_that_cannot_take_the_write_lock_still_answers(repo, monkeypatch):
    _chain(repo, _snapshots(2, 4))

    def busy(lock_timeout_s=None):
        raise LockTimeoutError("another dlv process has held the repository lock")

    monkeypatch.setattr(repo.catalog, "write", busy)
    rows = archive_dry_run(repo, [1.0, 2.0])
    assert [r["alpha"] for r in rows] == [1.0, 2.0]
    assert _size_rows(repo) == []


def test_sizes_of_another_encoder_are_not_used_and_are_dropped(repo, monkeypatch):
    _chain(repo, _snapshots(2, 5))
    first = archive(repo)
    assert {r[2] for r in _size_rows(repo)} == {archive_mod.encoder_id()}
    monkeypatch.setattr(archive_mod, "encoder_id", lambda: "r999 zstd 9.9.9")
    later = archive(repo)
    assert later.n_known == 0 and later.n_measured == first.n_measured
    assert {r[2] for r in _size_rows(repo)} == {"r999 zstd 9.9.9"}


def test_wrong_recorded_sizes_change_the_plan_but_never_what_is_stored(repo):
    snaps = _snapshots(3, 6)
    _chain(repo, snaps)
    archive(repo)
    with repo.catalog.write() as con:   # every delta claims 1 byte, every whole tensor 10 GB
        con.execute("UPDATE encoding_sizes SET bytes = CASE WHEN base = '' THEN 10000000000 ELSE 1 END")
    result = archive(repo, alpha=1e9)
    assert result.n_measured == 0
    assert repo.fsck().ok
    for i, sd in enumerate(snaps):
        assert_bit_exact(repo.checkout(f"cnn@{i + 1}", rebuild_module=False).state_dict, sd)


def test_gc_forgets_the_sizes_of_tensors_it_removes(repo):
    _chain(repo, _snapshots(3, 7))
    archive_dry_run(repo, [2.0])   # sizes recorded; every tensor still stored whole, as committed
    before = {t for t, _, _, _ in _size_rows(repo)}
    repo.remove(["cnn@3"])
    assert repo.gc(grace_s=0).removed_tensor_rows > 0
    with repo.catalog.read() as con:
        live = {r.tensor_hash for r in tensorstore.all_tensor_rows(con)}
    rows = _size_rows(repo)
    assert before - live and rows
    assert all(t in live and (b == "" or b in live) for t, b, _, _ in rows)


def test_cli_says_what_it_measured_and_remeasure_measures_again(cli):
    cli("init")
    _chain(modelhub.open_repo(cli.work), _snapshots(2, 8))
    code, out, _ = cli("archive")
    assert code == 0 and "sized by an earlier archive" not in out
    measured = int(out.split("measured", 1)[1].split()[0])
    code, out, _ = cli("archive")
    assert code == 0 and f"measured  0 encodings ({measured} sized by an earlier archive)" in out
    code, out, _ = cli("archive", "--remeasure")
    assert code == 0 and f"measured  {measured} encodings\n" in out


def test_a_repository_from_before_measured_sizes_is_upgraded_and_archives(tmp_path):
    repo = modelhub.init_repo(tmp_path / "old")
    _chain(repo, _snapshots(2, 9))
    with repo.catalog.write() as con:   # back to schema version 4
        con.execute("DROP TABLE encoding_sizes")
        con.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    reopened = modelhub.open_repo(tmp_path / "old")
    result = archive(reopened)
    assert result.n_measured > 0 and len(_size_rows(reopened)) >= result.n_measured


def test_recording_drops_sizes_of_tensors_the_catalog_no_longer_holds(repo):
    """A dry run records after its read scope; a gc in between must not leave rows behind."""
    _chain(repo, _snapshots(2, 10))
    encoder = archive_mod.encoder_id()
    with repo.catalog.write() as con:
        con.execute("INSERT INTO encoding_sizes VALUES (?, '', ?, 10), (?, ?, ?, 5)",
                    ["f" * 80, encoder, "e" * 80, "f" * 80, encoder])
    archive_dry_run(repo, [2.0])
    assert not {t for t, _, _, _ in _size_rows(repo)} & {"e" * 80, "f" * 80}
    assert _size_rows(repo)


def test_damaged_size_rows_are_measured_again_not_trusted(repo):
    """A negative size, or a whole tensor's size missing, is no row an archive writes (a damaged
    or hand-edited catalog): it must not reach the planner (whose graph check refuses negative
    costs, a traceback before this) but be measured again and replaced."""
    snaps = _snapshots(2, 11)
    _chain(repo, snaps)
    first = archive(repo)
    with repo.catalog.write() as con:
        con.execute("UPDATE encoding_sizes SET bytes = CASE WHEN base = '' THEN NULL ELSE -5 END")
    again = archive(repo)
    assert again.n_known == 0 and again.n_measured == first.n_measured
    assert again.stored_after == first.stored_after
    assert all(b is not None and b >= 0 for t, base, _, b in _size_rows(repo) if base == "")
    assert all(b is None or b >= 0 for _, _, _, b in _size_rows(repo))
    for i, sd in enumerate(snaps):
        assert_bit_exact(repo.checkout(f"cnn@{i + 1}", rebuild_module=False).state_dict, sd)
