"""The catalog's own storage: verification, rotating verified backups, restore.

DuckDB checksums every block it reads, so damage shows up as an error the
first time a damaged block is read -- which may be long after it happened.
:func:`verify_catalog` reads every row of every table (and therefore every
block holding data), so `dlv fsck` finds damage before a commit does.

Recovery (docs/INTERNALS.md, "Catalog backups"):

* **Backups.** After a write transaction, when the newest backup is older than
  ``DLV_CATALOG_BACKUP_INTERVAL`` seconds (default 600), the checkpointed
  catalog is copied to ``.dlv/backups/catalog-<UTC time>.duckdb``, the copy is
  verified (every row read back) and fsynced, and only then renamed into
  place; the newest ``DLV_CATALOG_BACKUPS`` (default 3) are kept. `dlv fsck`
  takes one too when it finds the catalog healthy. A backup never fails the
  operation that triggered it.
* **Restore** (`dlv fsck --restore-catalog`): the damaged file (and its WAL)
  is moved aside to ``.dlv/backups/damaged-<UTC time>.duckdb``; then, if every
  row of the damaged catalog is still readable (damage in an index, free or
  metadata block), its rows are copied into a freshly built catalog: nothing
  is lost. Otherwise the newest backup that verifies is restored: versions
  committed after it are lost (their blobs stay as orphans until `dlv gc`).

Only this module and :mod:`.db` touch the database file directly.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from ..errors import CatalogCorruptError, CatalogError
from .generation import bump_generation
from .schema import MIGRATIONS, SCHEMA_VERSION

DEFAULT_INTERVAL_S = 600.0
DEFAULT_KEEP = 3
_PREFIX, _SUFFIX = "catalog-", ".duckdb"

#: the way out of a damaged catalog, named in every corruption message (here and in db.py)
RECOVERY_HINT = ("run `dlv fsck --restore-catalog` (it rebuilds the catalog from its readable rows, else restores "
                 "the newest verified backup in .dlv/backups)")


def _close_quietly(con) -> None:
    """Close a scratch or probe connection; a damaged file may fail even that, which says nothing new."""
    try:
        con.close()
    except duckdb.Error:
        pass


def backup_interval_s() -> float:
    try:
        return max(0.0, float(os.environ.get("DLV_CATALOG_BACKUP_INTERVAL", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


def backups_to_keep() -> int:
    try:
        return max(1, int(os.environ.get("DLV_CATALOG_BACKUPS", DEFAULT_KEEP)))
    except ValueError:
        return DEFAULT_KEEP


def backups_dir(db_path: Path) -> Path:
    return Path(db_path).parent / "backups"


def list_backups(db_path: Path) -> list[Path]:
    """Backups, newest first."""
    folder = backups_dir(db_path)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.name.startswith(_PREFIX) and p.name.endswith(_SUFFIX)),
                  key=lambda p: p.name, reverse=True)


# -- verification ----------------------------------------------------------------------------
def table_names(con) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() "
        "AND table_schema = 'main' ORDER BY table_name").fetchall()]


def read_every_row(con) -> int:
    """Read every column of every row of every table (DuckDB verifies each block's checksum); returns rows read."""
    rows = 0
    for name in table_names(con):
        quoted = '"' + name.replace('"', '""') + '"'
        # hashing the whole row forces every column to be read; one number comes back
        n, _ = con.execute(f"SELECT count(*), bit_xor(hash(t)) FROM {quoted} AS t").fetchone()
        rows += int(n)
    return rows


def verify_catalog(path: Path) -> str | None:
    """None when every row of the catalog file at ``path`` reads back; else the first error's text.

    Uses its own DuckDB instance, so a damaged file cannot invalidate the
    process's shared one.
    """
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        return _first_line(exc)
    try:
        read_every_row(con)
        version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version is None:
            return "the catalog has no schema version"
        return None
    except duckdb.Error as exc:
        return _first_line(exc)
    finally:
        _close_quietly(con)


def check_catalog_storage(con, db_path: Path) -> None:
    """Raise :class:`CatalogCorruptError` unless every row of the open catalog reads back and a
    trial write on a scratch copy succeeds (the caller's scope holds the repository lock)."""
    try:
        read_every_row(con)
    except duckdb.Error as exc:
        raise CatalogCorruptError(f"the catalog {db_path} is damaged ({_first_line(exc)}); {RECOVERY_HINT}") from None
    error = probe_catalog(db_path)
    if error is not None:
        raise CatalogCorruptError(f"the catalog {db_path} is damaged (a trial write failed: {error}); {RECOVERY_HINT}")


def probe_catalog(db_path: Path) -> str | None:
    """None when a trial write succeeds on a scratch copy of the catalog; else the first error's text.

    Reading rows does not touch every block a commit needs: primary-key
    indexes and the free list are read only when rows are written and the
    file is checkpointed. So a copy is made, every row of every table is
    deleted (which walks every index) and the copy is checkpointed, then
    thrown away. The caller holds the repository lock (no writer changes
    the file while it is copied).
    """
    db_path = Path(db_path)
    wal = db_path.with_name(db_path.name + ".wal")
    scratch = None
    # next to the catalog when we may write there, else in the system's temp folder (a read-only repository)
    for folder in (backups_dir(db_path), Path(tempfile.gettempdir())):
        candidate = folder / f".tmp-probe-{uuid.uuid4().hex}{_SUFFIX}"
        try:
            folder.mkdir(exist_ok=True)
            shutil.copyfile(db_path, candidate)
            if wal.exists():
                shutil.copyfile(wal, candidate.with_name(candidate.name + ".wal"))
            scratch = candidate
            break
        except OSError:
            candidate.unlink(missing_ok=True)
            candidate.with_name(candidate.name + ".wal").unlink(missing_ok=True)
    if scratch is None:
        return None   # nowhere to try a write; every row was read back by the caller
    try:
        try:
            con = duckdb.connect(str(scratch))
        except duckdb.Error as exc:
            return _first_line(exc)
        try:
            con.execute("BEGIN")
            for name in table_names(con):
                con.execute('DELETE FROM "' + name.replace('"', '""') + '"')
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
            return None
        except duckdb.Error as exc:
            if any(m in str(exc).lower() for m in ("no space left", "disk full", "disk quota")):
                return None   # the scratch copy found no room: says nothing about the catalog
            return _first_line(exc)
        finally:
            _close_quietly(con)
    finally:
        scratch.unlink(missing_ok=True)
        scratch.with_name(scratch.name + ".wal").unlink(missing_ok=True)


# -- backups -----------------------------------------------------------------------------------
def backup_due(db_path: Path, now: float | None = None) -> bool:
    folder = backups_dir(db_path)
    if not folder.is_dir():
        return True
    newest = list_backups(db_path)
    last = newest[0].stat().st_mtime if newest else folder.stat().st_mtime  # none yet: count from `dlv init`
    return (now if now is not None else time.time()) - last >= backup_interval_s()


def take_backup(db_path: Path) -> Path | None:
    """Copy the (checkpointed, unlocked-for-writers) catalog to a verified backup; None when skipped.

    The caller holds the repository lock, so no writer changes the file
    while it is copied. A catalog with a pending WAL (a failed checkpoint)
    is not copied: the file alone would miss the newest transactions.
    """
    db_path = Path(db_path)
    wal = db_path.with_name(db_path.name + ".wal")
    if wal.exists() and wal.stat().st_size > 0:
        return None
    folder = backups_dir(db_path)
    folder.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    final = folder / f"{_PREFIX}{stamp}{_SUFFIX}"
    tmp = folder / f".tmp-{stamp}{_SUFFIX}"
    try:
        shutil.copyfile(db_path, tmp)
        error = verify_catalog(tmp)
        if error is not None:
            raise CatalogCorruptError(f"the catalog {db_path} is damaged ({error}); "
                                      "run `dlv fsck --restore-catalog`")
        _fsync_file(tmp)
        os.replace(tmp, final)
        _fsync_dir(folder)
    finally:
        tmp.unlink(missing_ok=True)
    for old in list_backups(db_path)[backups_to_keep():]:
        old.unlink(missing_ok=True)
    return final


# -- restore -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RestoreReport:
    source: str            # "salvaged" (rows of the damaged file) or "backup"
    backup: str | None     # the backup file restored from
    damaged_copy: str | None   # where the damaged catalog was moved
    rows: int              # rows in the restored catalog

    def to_dict(self) -> dict:
        return {"source": self.source, "backup": self.backup, "damaged_copy": self.damaged_copy, "rows": self.rows}


def restore_catalog(db_path: Path) -> RestoreReport:
    """Replace a damaged or missing catalog (the caller holds the exclusive repository lock)."""
    db_path = Path(db_path)
    folder = backups_dir(db_path)
    folder.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    tmp = folder / f".tmp-restore-{stamp}{_SUFFIX}"
    source, backup = None, None
    try:
        if db_path.exists() and _salvage(db_path, tmp):
            source = "salvaged"
        else:
            for candidate in list_backups(db_path):
                tmp.unlink(missing_ok=True)
                shutil.copyfile(candidate, tmp)
                if verify_catalog(tmp) is None:
                    source, backup = "backup", candidate
                    break
        if source is None:
            raise CatalogCorruptError(
                f"the catalog {db_path} cannot be restored: its rows are unreadable and no backup in {folder} "
                "verifies; clone the repository again from a remote (`dlv clone`)")
        _fsync_file(tmp)
        damaged = None
        if db_path.exists():
            damaged = folder / f"damaged-{stamp}{_SUFFIX}"
            os.replace(db_path, damaged)
        wal = db_path.with_name(db_path.name + ".wal")
        if wal.exists():
            os.replace(wal, folder / f"damaged-{stamp}{_SUFFIX}.wal")
        os.replace(tmp, db_path)
        _fsync_dir(db_path.parent)
        _fsync_dir(folder)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        rows = read_every_row(con)
    finally:
        con.close()
    return RestoreReport(source, str(backup) if backup else None, str(damaged) if damaged else None, rows)


def rewrite_catalog(db_path: Path) -> None:
    """Copy every row into a freshly built file and drop the backups (the caller holds the exclusive lock).

    DuckDB leaves the bytes of updated or deleted rows in free blocks, and
    backups are full copies: after removing something that must not stay on
    disk (credentials), this is how it goes for good.
    """
    db_path = Path(db_path)
    folder = backups_dir(db_path)
    folder.mkdir(exist_ok=True)
    tmp = folder / f".tmp-rewrite-{uuid.uuid4().hex}{_SUFFIX}"
    try:
        if not _salvage(db_path, tmp) or verify_catalog(tmp) is not None:
            raise CatalogCorruptError(f"the catalog {db_path} could not be rewritten; run `dlv fsck`")
        _fsync_file(tmp)
        os.replace(tmp, db_path)
        _fsync_dir(db_path.parent)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
    for old in folder.iterdir():
        if old.name.startswith((_PREFIX, "damaged-")):
            old.unlink(missing_ok=True)
    _fsync_dir(folder)


def _salvage(damaged: Path, out: Path) -> bool:
    """Copy every row of ``damaged`` into a freshly built catalog at ``out``; False if any row is unreadable."""
    try:
        con = duckdb.connect(str(out))
    except duckdb.Error:
        return False
    try:
        con.execute("BEGIN")
        for step in range(SCHEMA_VERSION):
            con.execute(MIGRATIONS[step])
        con.execute("DELETE FROM meta")
        literal = "'" + str(damaged).replace("'", "''") + "'"
        con.execute(f"ATTACH {literal} AS damaged (READ_ONLY)")
        old = [r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'damaged' "
            "AND table_schema = 'main'").fetchall()]
        new = set(table_names(con))
        if set(old) != new:
            return False   # another schema version: a backup is the safer source
        for name in sorted(new):   # the schema has no foreign keys: any order
            quoted = '"' + name.replace('"', '""') + '"'
            con.execute(f"INSERT INTO main.{quoted} SELECT * FROM damaged.main.{quoted}")
        bump_generation(con)    # the rows were rewritten: row ids moved (selection_cache.py joins by them)
        con.execute("COMMIT")
        con.execute("DETACH damaged")
        con.execute("CHECKPOINT")
        return True
    except duckdb.Error:
        return False
    finally:
        _close_quietly(con)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    from ..storage.atomic import fsync_dir
    fsync_dir(path)


__all__ = ["verify_catalog", "probe_catalog", "take_backup", "restore_catalog", "list_backups", "backup_due",
           "RestoreReport", "CatalogError"]
