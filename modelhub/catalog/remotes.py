"""Catalog queries for sharing through remotes: the list of remotes, and catalog rows in and out.

Why here: SQL lives in ``modelhub/catalog`` only. ``modelhub/remote`` decides *what* to publish,
pull and accept (closures, validation, renumbering); these functions are the reads and writes
that decision needs, on any catalog connection: the local repository's, or the temporary
catalog that holds a remote's segments (``remote.view.RemoteView``).

Table and column names that reach SQL text are never taken from a remote's rows: callers pass
this package's own constants, and :func:`insert_rows` uses only columns the target table's
``information_schema`` lists.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import duckdb

from ..errors import CatalogError
from .schema import SCHEMA_VERSION


# ----------------------------------------------------------------------------- row sets


@dataclass(frozen=True)
class TableRows:
    """Rows of one catalog table, with their column names (what an export or a segment carries)."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r)) for r in self.rows]


class RowsRejectedError(CatalogError):
    """Rows given to :func:`insert_rows` do not fit the target table (types, constraints)."""

    def __init__(self, table: str, detail: str) -> None:
        super().__init__(f"rows of table {table} do not fit this catalog ({detail})")
        self.table = table
        self.detail = detail


# ----------------------------------------------------------------------------- remote configuration


@dataclass(frozen=True)
class StoredRemote:
    """One row of the ``remotes`` table: a name, a canonical URL and fsspec options."""

    name: str
    url: str
    options: Mapping[str, Any] = field(default_factory=dict)


def _remote(row: tuple) -> StoredRemote:
    return StoredRemote(row[0], row[1], json.loads(row[2]))


def stored_remotes(con: duckdb.DuckDBPyConnection) -> list[StoredRemote]:
    """Every configured remote, by name."""
    return [_remote(r) for r in con.execute("SELECT name, url, config FROM remotes ORDER BY name").fetchall()]


def stored_remote(con: duckdb.DuckDBPyConnection, name: str) -> StoredRemote | None:
    """The remote called ``name``, or None when there is none."""
    row = con.execute("SELECT name, url, config FROM remotes WHERE name = ?", [name]).fetchone()
    return _remote(row) if row else None


def remote_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Names of the configured remotes, sorted (for 'known: ...' in messages)."""
    return [r[0] for r in con.execute("SELECT name FROM remotes ORDER BY name").fetchall()]


def add_stored_remote(con: duckdb.DuckDBPyConnection, remote: StoredRemote) -> None:
    """List a new remote (the caller checked that the name is free: see :func:`stored_remote`)."""
    con.execute("INSERT INTO remotes (name, url, config) VALUES (?, ?, ?)",
                [remote.name, remote.url, json.dumps(dict(remote.options), sort_keys=True)])


def set_remote_options(con: duckdb.DuckDBPyConnection, name: str, options: Mapping[str, Any]) -> None:
    """Replace a remote's options (e.g. without the credentials an older version stored)."""
    con.execute("UPDATE remotes SET config = ? WHERE name = ?", [json.dumps(dict(options), sort_keys=True), name])


def delete_stored_remote(con: duckdb.DuckDBPyConnection, name: str) -> None:
    con.execute("DELETE FROM remotes WHERE name = ?", [name])


# ----------------------------------------------------------------------------- what a catalog holds


def parent_links(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """version id -> its parents' ids, in parent order (the whole lineage graph, for closures)."""
    parents: dict[str, list[str]] = {}
    for vid, pid in con.execute("SELECT version_id, parent_id FROM version_parents ORDER BY version_id, ord").fetchall():
        parents.setdefault(vid, []).append(pid)
    return parents


def all_version_ids(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("SELECT id FROM versions").fetchall()}


def version_ids_by_creation(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every version id, oldest first (ties: model, then seq): the default set a publish sends."""
    return [r[0] for r in con.execute("SELECT id FROM versions ORDER BY created_at, model, seq").fetchall()]


def present_version_ids(con: duckdb.DuckDBPyConnection, ids: Sequence[str]) -> set[str]:
    """Which of ``ids`` this catalog already has."""
    return present_keys(con, "versions", "id", ids)


def present_tensor_hashes(con: duckdb.DuckDBPyConnection, hashes: Sequence[str]) -> set[str]:
    """Which of ``hashes`` this catalog already stores (those keep their local encoding on a pull)."""
    return present_keys(con, "tensor_data", "tensor_hash", hashes)


def present_keys(con: duckdb.DuckDBPyConnection, table: str, column: str, keys: Sequence[Any]) -> set:
    """Which of ``keys`` appear in ``table.column`` (both names are the caller's constants)."""
    if not keys:
        return set()
    return {r[0] for r in con.execute(
        f'SELECT "{column}" FROM "{table}" WHERE list_contains(?, "{column}")', [list(keys)]).fetchall()}


def select_rows(con: duckdb.DuckDBPyConnection, table: str, column: str, keys: Iterable[Any]) -> TableRows:
    """Every row of ``table`` whose ``column`` is one of ``keys`` (names: the caller's constants)."""
    cur = con.execute(f'SELECT * FROM "{table}" WHERE list_contains(?, "{column}")', [list(keys)])
    cols = tuple(d[0] for d in cur.description)
    return TableRows(table, cols, tuple(tuple(r) for r in cur.fetchall()))


#: (schema version, table) -> column names; every catalog this process opens is migrated to
#: SCHEMA_VERSION (Catalog.ensure_schema), so one lookup per table is enough
_COLUMNS: dict[tuple[int, str], tuple[str, ...]] = {}


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The columns of ``table`` in this catalog, in order (a fresh list each call)."""
    key = (SCHEMA_VERSION, table)
    if key not in _COLUMNS:
        # information_schema spans every attached database: stay in the current one
        _COLUMNS[key] = tuple(r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "AND table_catalog = current_database() ORDER BY ordinal_position", [table]
        ).fetchall())
    return list(_COLUMNS[key])


# ----------------------------------------------------------------------------- adding rows

#: rows per INSERT statement (one multi-row VALUES list is far faster than executemany)
_CHUNK = 256


def insert_rows(con: duckdb.DuckDBPyConnection, rows: TableRows, selected: Sequence[tuple[Any, ...]], *,
                ignore: bool = False) -> None:
    """Insert ``selected`` (rows shaped like ``rows.columns``) into table ``rows.name``.

    Only the columns the target table has are used, so rows from a newer publisher with extra
    columns still fit; column identifiers come from the target's information_schema, never from
    the rows. ``ignore``: rows whose key is already present are skipped. Raises
    :class:`RowsRejectedError` when the rows do not fit (types, constraints).
    """
    if not selected:
        return
    target = table_columns(con, rows.name)
    use = [c for c in rows.columns if c in target]
    idx = [rows.columns.index(c) for c in use]
    head = f'INSERT {"OR IGNORE " if ignore else ""}INTO "{rows.name}" ({", ".join(chr(34) + c + chr(34) for c in use)}) VALUES '
    one = "(" + ", ".join("?" * len(use)) + ")"
    try:
        for start in range(0, len(selected), _CHUNK):
            chunk = selected[start:start + _CHUNK]
            con.execute(head + ", ".join([one] * len(chunk)), [r[i] for r in chunk for i in idx])
    except duckdb.Error as exc:
        raise RowsRejectedError(rows.name, str(exc).splitlines()[0][:160]) from None


def seq_taken(con: duckdb.DuckDBPyConnection, model: str, seq: int) -> bool:
    """Whether ``model@seq`` names a version here already."""
    return con.execute("SELECT 1 FROM versions WHERE model = ? AND seq = ?", [model, seq]).fetchone() is not None


def next_seq(con: duckdb.DuckDBPyConnection, model: str) -> int:
    """The first free sequence number after ``model``'s last version (1 for a new model)."""
    return int(con.execute("SELECT coalesce(max(seq), 0) + 1 FROM versions WHERE model = ?", [model]).fetchone()[0])


def ensure_model(con: duckdb.DuckDBPyConnection, model: str) -> None:
    """List ``model`` (created now) unless it is listed already."""
    con.execute("INSERT OR IGNORE INTO models (name, created_at) SELECT ?, now()::TIMESTAMP", [model])
