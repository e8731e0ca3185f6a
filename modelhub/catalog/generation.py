"""The catalog's generation: a token that names one committed state of the catalog.

Every committed write scope replaces it with a fresh random token (``meta('generation')``,
written by :meth:`modelhub.catalog.db.Catalog.write` just before COMMIT), so a reader that
sees the same token sees the same rows. Caches of what is derived from the rows (the DQL
vocabulary, bound plans, per-metric values) key on it instead of re-reading the tables:
one indexed row read per statement. A copy of the file (a backup, a salvage) carries its
token along with the rows it names, so the token stays truthful after a restore. A
catalog that no write scope of this version has touched yet has no token: nothing is
cached for it.
"""
from __future__ import annotations

import secrets

import duckdb

_KEY = "generation"


def bump_generation(con: duckdb.DuckDBPyConnection) -> None:
    """Give the state this write transaction commits a new token (no-op before the schema exists)."""
    has_meta = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND table_name = 'meta'"
    ).fetchone()[0]
    if has_meta:
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [_KEY, secrets.token_hex(16)])


def catalog_generation(con: duckdb.DuckDBPyConnection) -> str | None:
    """The token of the state ``con``'s transaction reads; None when the catalog has none yet."""
    rows = con.execute("SELECT value FROM meta WHERE key = ?", [_KEY]).fetchall()
    return rows[0][0] if rows else None
