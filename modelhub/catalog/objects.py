"""The blobs the catalog lists (table objects) and the columns that keep blobs alive.

Any catalog column named ``blob_hash`` (files, staged, dataset chunks, ...)
keeps its blob alive, so a table added with such a column is covered by gc
and fsck without changes there.
"""
from __future__ import annotations

import duckdb

from .bulk import insert_or_ignore_rows


def add_blob(con: duckdb.DuckDBPyConnection, blob_hash: str, size: int) -> None:
    """List a blob (already durable in the object store) in the caller's transaction."""
    con.execute("INSERT OR IGNORE INTO objects VALUES (?, ?)", [blob_hash, size])


def add_blobs(con: duckdb.DuckDBPyConnection, sizes: dict[str, int]) -> None:
    """List several blobs at once (hash -> size)."""
    insert_or_ignore_rows(con, "objects", [[h, s] for h, s in sizes.items()])


def delete_blob(con: duckdb.DuckDBPyConnection, blob_hash: str) -> None:
    con.execute("DELETE FROM objects WHERE blob_hash = ?", [blob_hash])


def blob_sizes(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Every listed blob's size, by hash."""
    return {h: int(s) for h, s in con.execute("SELECT blob_hash, size FROM objects").fetchall()}


def listed_blobs(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT blob_hash FROM objects").fetchall()]


def total_size(con: duckdb.DuckDBPyConnection, blob_hashes: list[str]) -> int:
    """Bytes of the listed blobs among ``blob_hashes`` (absent ones count 0)."""
    if not blob_hashes:
        return 0
    return int(con.execute("SELECT coalesce(sum(size), 0) FROM objects WHERE blob_hash IN (SELECT unnest(?))",
                           [list(dict.fromkeys(blob_hashes))]).fetchone()[0])


def file_blob_bytes(con: duckdb.DuckDBPyConnection) -> int:
    """Bytes of the blobs attached as files to versions or staged for the next commit."""
    return int(con.execute(
        "SELECT coalesce(sum(size), 0) FROM objects WHERE blob_hash IN (SELECT blob_hash FROM files UNION SELECT blob_hash FROM staged)"
    ).fetchone()[0])


def blob_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Tables (besides ``objects``) with a ``blob_hash`` column, by name."""
    rows = con.execute(
        "SELECT table_name FROM information_schema.columns WHERE column_name = 'blob_hash' "
        "AND table_name <> 'objects' AND table_catalog = current_database() ORDER BY table_name"
    ).fetchall()
    return [r[0] for r in rows]


def blobs_in(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The distinct blobs ``table.blob_hash`` names; ``table`` comes from :func:`blob_columns`."""
    # table names come from the catalog's own information_schema, never from users
    return [r[0] for r in con.execute(f'SELECT DISTINCT blob_hash FROM "{table}"').fetchall()]
