"""The catalog's own storage (issue 16, item 3): fsck finds damage (exit 65 with the way out), no
command dies with a DuckDB traceback, and `dlv fsck --restore-catalog` brings the catalog back --
from its own readable rows when it can, else from the newest rotating verified backup."""
from __future__ import annotations

import duckdb
import pytest

from helpers import assert_bit_exact, tiny_cnn
from modelhub.catalog.maintenance import list_backups, verify_catalog
from modelhub.errors import CatalogCorruptError

HEADER, BLOCK = 3 * 4096, 262144   # DuckDB's file layout: three header blocks, then 256 KiB blocks


@pytest.fixture
def backups_every_write(monkeypatch):
    monkeypatch.setenv("DLV_CATALOG_BACKUP_INTERVAL", "0")


def _damage_rows_of(repo, table: str) -> None:
    """Flip a byte inside every block that holds rows of ``table``."""
    path = repo.paths.catalog
    con = duckdb.connect(str(path), read_only=True)
    try:
        blocks = sorted({r[0] for r in con.execute(
            f"SELECT block_id FROM pragma_storage_info('{table}') WHERE persistent AND block_id >= 0").fetchall()})
    finally:
        con.close()
    assert blocks
    data = bytearray(path.read_bytes())
    for block in blocks:
        data[HEADER + block * BLOCK + 8 + 64] ^= 0xFF
    path.write_bytes(bytes(data))


def _commit(repo, seed: int, name: str = "m"):
    return repo.commit(tiny_cnn(seed), name=name, message=f"seed {seed}")


def test_fsck_finds_damaged_catalog_rows_and_exits_65_with_the_way_out(repo, cli) -> None:
    _commit(repo, 0)
    _damage_rows_of(repo, "versions")
    code, out, err = cli("fsck", "--repo", str(repo.root))
    assert code == 65 and err.count("\n") == 1 and "Traceback" not in err
    assert "is damaged (Corrupt database file" in err and "dlv fsck --restore-catalog" in err
    code, _, err = cli("log", "--repo", str(repo.root))   # any command: one line, exit 65, no DuckDB traceback
    assert code == 65 and err.startswith("error: ") and "dlv fsck --restore-catalog" in err
    with pytest.raises(CatalogCorruptError, match="is damaged .*dlv fsck --restore-catalog"):
        _commit(repo, 1)


def test_restore_from_the_newest_verified_backup_after_row_damage(repo, cli, backups_every_write) -> None:
    v1, v2 = _commit(repo, 0), _commit(repo, 1)
    assert len(list_backups(repo.paths.catalog)) == 2 and all(verify_catalog(b) is None
                                                               for b in list_backups(repo.paths.catalog))
    _damage_rows_of(repo, "versions")
    code, out, err = cli("fsck", "--restore-catalog", "--repo", str(repo.root))
    assert code == 0, err
    assert "restored from the backup" in err and "2 versions" in err and "the damaged file is kept as" in err
    assert [v.id for v in repo.log()] == [v2.id, v1.id]
    assert_bit_exact(repo.checkout("m@1").state_dict, tiny_cnn(0).state_dict())
    assert repo.fsck(deep=True).ok
    _commit(repo, 2)   # and the repository takes commits again


def test_a_deleted_catalog_is_named_and_restored_with_every_version(repo, cli, backups_every_write) -> None:
    ids = [_commit(repo, s).id for s in range(3)]
    repo.paths.catalog.unlink()
    code, _, err = cli("log", "--repo", str(repo.root))
    assert code == 65 and "catalog.duckdb is missing; run `dlv fsck --restore-catalog`" in err
    code, _, err = cli("init", str(repo.root))   # never a fresh, empty catalog over the old objects
    assert code == 65 and "whose catalog is missing; run `dlv fsck --restore-catalog`" in err
    code, _, err = cli("fsck", "--restore-catalog", "--repo", str(repo.root))
    assert code == 0 and "3 versions" in err, err
    assert [v.id for v in repo.log()] == ids[::-1]
    assert_bit_exact(repo.checkout("m").state_dict, tiny_cnn(2).state_dict())


def test_a_truncated_catalog_is_exit_65_and_restored(repo, cli, backups_every_write) -> None:
    v = _commit(repo, 0)
    data = repo.paths.catalog.read_bytes()
    repo.paths.catalog.write_bytes(data[: len(data) // 3])
    code, _, err = cli("desc", "m", "--repo", str(repo.root))
    assert code == 65 and err.count("\n") == 1 and "dlv fsck --restore-catalog" in err
    assert cli("fsck", "--restore-catalog", "--repo", str(repo.root))[0] == 0
    assert [x.id for x in repo.log()] == [v.id]


def test_restore_salvages_every_row_when_they_all_read_back(repo, cli) -> None:
    ids = [_commit(repo, s).id for s in range(2)]
    repo.add([_write(repo.root / "notes.txt", b"staged")])   # staged files are rows too
    assert list_backups(repo.paths.catalog) == []   # young repository: no backup is due yet
    code, _, err = cli("fsck", "--restore-catalog", "--repo", str(repo.root))
    assert code == 0 and "rebuilt from its own readable rows (nothing lost); 2 versions" in err, err
    assert [v.id for v in repo.log()][::-1] == ids and repo.staged() == [("notes.txt", 6)]
    assert_bit_exact(repo.checkout("m").state_dict, tiny_cnn(1).state_dict())


def test_without_a_readable_row_or_backup_restore_says_what_is_left(repo, cli) -> None:
    _commit(repo, 0)
    _damage_rows_of(repo, "versions")
    code, _, err = cli("fsck", "--restore-catalog", "--repo", str(repo.root))
    assert code == 65 and "cannot be restored" in err and "dlv clone" in err


def test_backups_rotate_and_are_taken_only_when_due(repo, monkeypatch) -> None:
    _commit(repo, 0)
    assert list_backups(repo.paths.catalog) == []          # default interval: not after every write
    monkeypatch.setenv("DLV_CATALOG_BACKUP_INTERVAL", "0")
    monkeypatch.setenv("DLV_CATALOG_BACKUPS", "2")
    for s in range(1, 4):
        _commit(repo, s)
    backups = list_backups(repo.paths.catalog)
    assert len(backups) == 2 and all(verify_catalog(b) is None for b in backups)
    assert not list(repo.paths.dlv.joinpath("backups").glob(".tmp-*"))


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_damage_only_a_write_meets_is_found_by_fsck_and_salvaged_without_loss(repo, cli) -> None:
    """A flipped byte in a block that no row read touches (a primary-key index): reads work, a commit
    fails. fsck's trial write on a scratch copy finds it; the restore rebuilds from every row."""
    from modelhub.catalog.maintenance import probe_catalog
    ids = [_commit(repo, s).id for s in range(2)]
    path = repo.paths.catalog
    con = duckdb.connect(str(path), read_only=True)
    try:
        n_blocks = int(con.execute("SELECT total_blocks FROM pragma_database_size()").fetchone()[0])
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        row_blocks = {r[0] for t in tables for r in con.execute(
            f"SELECT block_id FROM pragma_storage_info('{t}') WHERE persistent AND block_id >= 0").fetchall()}
    finally:
        con.close()
    clean = path.read_bytes()
    for block in [b for b in range(n_blocks) if b not in row_blocks]:
        data = bytearray(clean)
        data[HEADER + block * BLOCK + 8 + 64] ^= 0xFF
        path.write_bytes(bytes(data))
        if verify_catalog(path) is None and probe_catalog(path) is not None:
            break
    else:
        pytest.fail("no block that only a write reads; the catalog layout changed")
    assert [v.id for v in repo.log()][::-1] == ids          # reads still work
    with pytest.raises(CatalogCorruptError, match="is damaged .*dlv fsck --restore-catalog"):
        _commit(repo, 2)
    code, _, err = cli("fsck", "--repo", str(repo.root))
    assert code == 65 and "a trial write failed" in err
    code, _, err = cli("fsck", "--restore-catalog", "--repo", str(repo.root))
    assert code == 0 and "nothing lost" in err, err
    assert [v.id for v in repo.log()][::-1] == ids
    _commit(repo, 2)
    assert repo.fsck(deep=True).ok
