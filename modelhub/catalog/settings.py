"""Repository settings (`dlv config`): rows ``setting.<name>`` of the ``meta`` key/value table.

The table exists since schema version 1, so settings need no migration; the
prefix keeps them apart from the catalog's own keys (``schema_version``).
"""
from __future__ import annotations

import duckdb

_PREFIX = "setting."


def get(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    row = con.execute("SELECT value FROM meta WHERE key = ?", [_PREFIX + name]).fetchone()
    return row[0] if row else None


def put(con: duckdb.DuckDBPyConnection, name: str, value: str) -> None:
    con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [_PREFIX + name, value])


def delete(con: duckdb.DuckDBPyConnection, name: str) -> None:
    con.execute("DELETE FROM meta WHERE key = ?", [_PREFIX + name])


def all_settings(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    rows = con.execute("SELECT key, value FROM meta WHERE starts_with(key, ?) ORDER BY key", [_PREFIX]).fetchall()
    return {k[len(_PREFIX):]: v for k, v in rows}
