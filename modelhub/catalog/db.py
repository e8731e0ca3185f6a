"""DuckDB catalog connection management.

Each operation opens the database, does its work in one transaction and
closes it again, so concurrent ``dlv`` processes interleave instead of
failing (see :mod:`.lock`). Only parameterized SQL is executed through this
module's users; no user literal is ever formatted into a statement.
"""
from __future__ import annotations

import errno
import itertools
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from ..errors import CatalogCorruptError, CatalogError, DiskFullError, ModelhubError
from .generation import bump_generation
from .lock import repo_lock
from .maintenance import RECOVERY_HINT, backup_due, backups_dir, take_backup
from .schema import MIGRATIONS, SCHEMA_VERSION
from .tensor_ids import NEW_TENSOR_HASH, set_tensor_hash_name


class Catalog:
    def __init__(self, db_path: Path, lock_path: Path) -> None:
        self.db_path = Path(db_path)
        self.lock_path = Path(lock_path)
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._writing = False

    # -- creation and migration -------------------------------------------------
    @classmethod
    def create(cls, db_path: Path, lock_path: Path) -> "Catalog":
        cat = cls(db_path, lock_path)
        backups_dir(db_path).mkdir(parents=True, exist_ok=True)  # its mtime starts the backup clock
        with cat.write() as con:
            _migrate(con, 0)
            set_tensor_hash_name(con, NEW_TENSOR_HASH)
        return cat

    def ensure_schema(self) -> None:
        """Apply missing migrations (one transaction) or refuse a newer schema."""
        with self.read() as con:
            version = _schema_version(con)
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"the catalog has schema version {version} but this modelhub understands "
                f"up to {SCHEMA_VERSION}; upgrade modelhub (pip install -U modelhub)"
            )
        with self.write() as con:
            _migrate(con, _schema_version(con))

    # -- scopes -------------------------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read scope: shared lock, read-only connection (or the enclosing writer's)."""
        if self._conn is not None:
            yield self._conn
            return
        with repo_lock(self.lock_path, exclusive=False):
            con = self._connect(read_only=True)
            self._conn = con
            try:
                yield con
            except duckdb.Error as exc:
                _raise_if_storage(exc, self.db_path)
                raise
            finally:
                self._conn = None
                try:
                    con.close()
                except duckdb.Error:
                    _reset_engine()  # what was read stands; the next scope starts afresh

    @contextmanager
    def write(self, lock_timeout_s: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write scope: exclusive lock (waiting at most ``lock_timeout_s``, default
        ``DLV_LOCK_TIMEOUT``) and one transaction, committed on success."""
        if self._conn is not None:
            if not self._writing:
                raise RuntimeError("write scope opened inside a read scope")
            yield self._conn
            return
        with repo_lock(self.lock_path, exclusive=True, timeout_s=lock_timeout_s):
            con = self._connect(read_only=False)
            self._conn, self._writing = con, True
            committed = False
            try:
                con.begin()
                con.in_write_transaction = True
                try:
                    yield con
                except BaseException as exc:
                    try:
                        con.rollback()
                    except duckdb.Error:
                        _reset_engine()  # an invalidated database: nothing to roll back into
                    if isinstance(exc, duckdb.Error):
                        _raise_if_storage(exc, self.db_path)
                    raise
                try:
                    bump_generation(con)    # readers' caches key on it (generation.py)
                    con.commit()
                except duckdb.Error as exc:
                    _reset_engine()
                    raise translate_error(exc, self.db_path) from None
                committed = True
                # Checkpointing folds the WAL into the main file while we hold
                # the lock, so readers rarely need to replay it. It is
                # housekeeping: the transaction is durable in the WAL, so a
                # failure here (a full disk) must not turn it into a failure;
                # the next writer's checkpoint or any reader replays the WAL.
                try:
                    con.checkpoint()
                except duckdb.Error:
                    _reset_engine()
            finally:
                self._conn, self._writing = None, False
                try:
                    con.close()
                except duckdb.Error:
                    # never masks the outcome: committed, or the error already raised
                    _reset_engine()
            if committed:
                self.backup_if_due()

    def backup_if_due(self) -> None:
        """A verified copy of the catalog now and then (maintenance.py); never fails the write."""
        try:
            if backup_due(self.db_path):
                take_backup(self.db_path)
        except (duckdb.Error, OSError, ModelhubError):
            pass  # the next write tries again; `dlv fsck` reports a damaged catalog

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        try:
            return _attach(self.db_path, read_only)
        except duckdb.Error as exc:
            # A failed ATTACH can leave the file registered in the instance
            # ("unique file handle conflict" on the next try): start afresh.
            _reset_engine()
            raise translate_error(exc, self.db_path, opening=True) from None


def _raise_if_storage(exc: BaseException, db_path: Path) -> None:
    """Damaged storage or a full disk met inside a scope: the modelhub error that says what to do."""
    mapped = translate_error(exc, db_path)
    if isinstance(mapped, (CatalogCorruptError, DiskFullError)):
        _reset_engine()
        raise mapped from None


_CORRUPT_MARKERS = ("corrupt", "checksum", "not a valid duckdb database", "invalidated", "serializ",
                    "internal error", "truncated", "could not read", "failed to read")
_FULL_MARKERS = ("no space left", "disk full", "disk quota")


def translate_error(exc: BaseException, db_path: Path | str | None = None, *, opening: bool = False) -> ModelhubError:
    """A DuckDB (or OS) failure as the modelhub error that says what to do.

    A full disk becomes :class:`DiskFullError` (nothing was committed: free
    space and retry); damaged storage becomes :class:`CatalogCorruptError`
    (exit 65) with the way out; anything else a :class:`CatalogError`.
    """
    where = f"the catalog {db_path}" if db_path else "the catalog"
    first = (str(exc).splitlines() or [type(exc).__name__])[0]
    low = first.lower()
    if (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)) or any(m in low for m in _FULL_MARKERS):
        return DiskFullError(f"no space left on the device while writing {where}; nothing was committed — "
                             "free some space (`dlv gc` removes unreferenced blobs) and run the command again")
    if "permission denied" in low:
        return CatalogError(f"{where} cannot be accessed ({first}); check the permissions of the .dlv folder")
    if isinstance(exc, (duckdb.InternalException, duckdb.SerializationException, duckdb.FatalException)) or (
            isinstance(exc, (duckdb.IOException, duckdb.Error)) and any(m in low for m in _CORRUPT_MARKERS)
            and not isinstance(exc, duckdb.ResourceInUseException)):
        return CatalogCorruptError(f"{where} is damaged ({first}); {RECOVERY_HINT}")
    if opening:
        return CatalogError(f"cannot open {where}: {first}; run `dlv fsck`, or {RECOVERY_HINT}")
    return CatalogError(f"{where} failed: {first}; run `dlv fsck` to check it")


# -- one DuckDB instance per process; each scope attaches the catalog file -----------
#
# Opening a DuckDB database costs ~20 ms even for an empty in-memory one (the
# instance, its buffer manager and thread pool are built each time), which
# dominated small operations: a checkout of a 4 MB model spent 25 of its 54 ms
# connecting. ATTACH/DETACH on a long-lived in-memory instance costs ~2 ms and
# keeps the same semantics: the file is opened (and DuckDB's file lock taken)
# only for the scope, so other processes can write between our scopes.

_instance: duckdb.DuckDBPyConnection | None = None
_instance_pid: int | None = None
_instance_guard = threading.Lock()
_aliases = itertools.count()
_inherited: list[duckdb.DuckDBPyConnection] = []  # parents' instances in a forked child, never closed


def _engine() -> duckdb.DuckDBPyConnection:
    global _instance, _instance_pid
    with _instance_guard:
        # A forked child must not use its parent's instance (its threads did not
        # survive the fork). Nor may it drop the last reference to it: the
        # destructor would wait for those threads forever. It is kept, unused.
        if _instance is None or _instance_pid != os.getpid():
            if _instance is not None:
                _inherited.append(_instance)
            _instance, _instance_pid = duckdb.connect(":memory:"), os.getpid()
        return _instance


def _reset_engine() -> None:
    """Drop this process's DuckDB instance after a failure that may have invalidated it.

    The next scope builds a fresh one; scopes in flight keep their cursor
    (and the old instance) alive until they close.
    """
    global _instance
    with _instance_guard:
        if _instance is not None and _instance_pid == os.getpid():
            _instance = None


def _attach(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A connection whose default database is the catalog file (detached again by ``_ScopeConnection.close``)."""
    con = _engine().cursor()
    alias = f"dlv_catalog_{next(_aliases)}"
    literal = "'" + str(path).replace("'", "''") + "'"  # ATTACH takes no parameters
    try:
        con.execute(f"ATTACH {literal} AS {alias}" + (" (READ_ONLY)" if read_only else ""))
        con.execute(f"USE {alias}")
    except BaseException:
        con.close()
        raise
    return _ScopeConnection(con, alias)


class _ScopeConnection:
    """The cursor of one scope: behaves as a DuckDB connection; ``close`` detaches the file."""

    def __init__(self, con: duckdb.DuckDBPyConnection, alias: str) -> None:
        self._con, self._alias = con, alias
        #: a write scope's transaction is open: a statement reading in it must not BEGIN its own
        #: (DuckDB aborts the open transaction when a nested BEGIN fails)
        self.in_write_transaction = False

    def __getattr__(self, name: str):
        return getattr(self._con, name)

    def execute(self, *args, **kwargs):
        return self._con.execute(*args, **kwargs)

    def checkpoint(self) -> None:
        self._con.execute(f"CHECKPOINT {self._alias}")

    def close(self) -> None:
        try:
            self._con.execute("USE memory")
            self._con.execute(f"DETACH {self._alias}")
        finally:
            self._con.close()


def _schema_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta' AND table_catalog = current_database()"
    ).fetchone()[0]
    if not exists:
        return 0
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def _migrate(con: duckdb.DuckDBPyConnection, current: int) -> None:
    for step in range(current, SCHEMA_VERSION):
        con.execute(MIGRATIONS[step])
        con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(step + 1)]
        )
