"""Versioned datasets (tables datasets, dataset_versions, dataset_chunks).

Records are append-only: a new dataset version covers records
``[0, n_records)``, so record i never changes once added.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import duckdb


@dataclass(frozen=True)
class DatasetRow:
    """A dataset's identity and the record format every version shares."""
    name: str
    uid: str
    record_shape: tuple[int, ...]
    x_dtype: str
    y_dtype: str


@dataclass(frozen=True)
class DatasetVersionRow:
    """One version of a dataset: records ``[0, n_records)``, of which ``added`` are new."""
    name: str
    version: int
    n_records: int
    added: int
    record_shape: tuple[int, ...]
    message: str
    created_at: datetime


@dataclass(frozen=True)
class Chunk:
    """A range of records starting at ``start_record``: its inputs (part x) or labels (part y)."""
    start_record: int
    part: str
    blob_hash: str


def dataset(con: duckdb.DuckDBPyConnection, name: str) -> DatasetRow | None:
    row = con.execute("SELECT name, uid, record_shape, x_dtype, y_dtype FROM datasets WHERE name = ?",
                      [name]).fetchone()
    return DatasetRow(row[0], row[1], tuple(json.loads(row[2])), row[3], row[4]) if row else None


def dataset_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT name FROM datasets ORDER BY name").fetchall()]


def latest_version(con: duckdb.DuckDBPyConnection, name: str) -> int | None:
    v = con.execute("SELECT max(version) FROM dataset_versions WHERE name = ?", [name]).fetchone()[0]
    return None if v is None else int(v)


def n_records(con: duckdb.DuckDBPyConnection, name: str, version: int) -> int | None:
    """How many records ``name@version`` holds, or None when that version does not exist."""
    row = con.execute("SELECT n_records FROM dataset_versions WHERE name = ? AND version = ?",
                      [name, version]).fetchone()
    return None if row is None else int(row[0])


def next_version(con: duckdb.DuckDBPyConnection, name: str) -> tuple[int, int]:
    """(the number of the next version of an existing dataset, its first new record)."""
    version, start = con.execute(
        "SELECT max(version) + 1, max(n_records) FROM dataset_versions WHERE name = ?", [name]).fetchone()
    return int(version), int(start)


def chunks(con: duckdb.DuckDBPyConnection, name: str, n_records: int) -> list[Chunk]:
    """The chunks holding records ``[0, n_records)``, by first record and part."""
    return [Chunk(int(s), p, h) for s, p, h in con.execute(
        "SELECT start_record, part, blob_hash FROM dataset_chunks WHERE name = ? AND end_record <= ? "
        "ORDER BY start_record, part", [name, n_records]).fetchall()]


def version_history(con: duckdb.DuckDBPyConnection) -> list[DatasetVersionRow]:
    """Every version of every dataset, by name and version."""
    rows = con.execute(
        "SELECT d.name, v.version, v.n_records, d.record_shape, v.message, v.created_at, "
        "v.n_records - coalesce(lag(v.n_records) OVER (PARTITION BY v.name ORDER BY v.version), 0) "
        "FROM datasets d JOIN dataset_versions v ON v.name = d.name ORDER BY d.name, v.version").fetchall()
    return [DatasetVersionRow(n, int(v), int(c), int(a), tuple(json.loads(s)), m, t) for n, v, c, s, m, t, a in rows]


# -- writes (inside the caller's write transaction) ---------------------------------------------
def insert_dataset(con: duckdb.DuckDBPyConnection, d: DatasetRow, created_at: datetime) -> None:
    con.execute("INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?)",
                [d.name, d.uid, json.dumps(list(d.record_shape)), d.x_dtype, d.y_dtype, created_at])


def insert_chunk(con: duckdb.DuckDBPyConnection, name: str, start: int, end: int, part: str,
                 blob_hash: str, size: int) -> None:
    con.execute("INSERT INTO dataset_chunks VALUES (?, ?, ?, ?, ?, ?)", [name, start, end, part, blob_hash, size])


def insert_version(con: duckdb.DuckDBPyConnection, name: str, version: int, n_records: int, message: str,
                   created_at: datetime) -> None:
    con.execute("INSERT INTO dataset_versions VALUES (?, ?, ?, ?, ?)", [name, version, n_records, message, created_at])
