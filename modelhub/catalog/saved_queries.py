"""Saved queries: a name for a select query's text, usable as a source (`from "NAME"`)."""
from __future__ import annotations

from datetime import datetime

import duckdb


def save_query(con: duckdb.DuckDBPyConnection, name: str, text: str, created_at: datetime) -> None:
    """Store ``text`` under ``name``, replacing what was saved under it before (write scope)."""
    con.execute("INSERT OR REPLACE INTO saved_queries (name, text, created_at) VALUES (?, ?, ?)",
                [name, text, created_at])


def saved_queries(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Every saved query: name -> text."""
    return dict(con.execute("SELECT name, text FROM saved_queries").fetchall())
