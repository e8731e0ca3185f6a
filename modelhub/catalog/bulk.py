"""Many-row inserts in one statement.

DuckDB runs ``executemany`` row by row (~0.3 ms each) and a single-row INSERT
costs ~2 ms, which dominated commits of models with many tensors; one INSERT
whose columns are lists zipped back by ``unnest`` costs about one statement.
"""
from __future__ import annotations

import duckdb


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: list[list]) -> None:
    """All ``rows`` into ``table`` in one INSERT; ``table`` is a catalog table name from
    this package, never user input."""
    if rows:
        width = len(rows[0])
        con.execute(f"INSERT INTO {table} SELECT {', '.join(['unnest(?)'] * width)}",
                    [list(col) for col in zip(*rows)])


def insert_or_ignore_rows(con: duckdb.DuckDBPyConnection, table: str, rows: list[list]) -> None:
    """As :func:`insert_rows`, skipping rows whose primary key is already present."""
    if rows:
        width = len(rows[0])
        con.execute(f"INSERT OR IGNORE INTO {table} SELECT {', '.join(['unnest(?)'] * width)}",
                    [list(col) for col in zip(*rows)])
