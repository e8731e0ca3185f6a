"""Rows of the feature cache (table materializations) that repository maintenance drops.

The engine's own reads and writes of this table belong to the engine's
catalog module; gc only needs to forget every row when it empties the cache.
"""
from __future__ import annotations

import duckdb


def forget_all(con: duckdb.DuckDBPyConnection) -> None:
    """Forget every materialized feature chunk (gc --features deletes their files)."""
    con.execute("DELETE FROM materializations")
