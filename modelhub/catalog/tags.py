"""Tags (aliases) of versions and their history (tables tags, tag_history)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb


@dataclass(frozen=True)
class Tag:
    model: str
    tag: str
    version_id: str


@dataclass(frozen=True)
class TagMove:
    """One move of a tag; ``version_id`` None: the tag was deleted."""
    model: str
    tag: str
    version_id: str | None
    author: str
    moved_at: datetime
    seq: int


def target(con: duckdb.DuckDBPyConnection, model: str, tag: str) -> str | None:
    row = con.execute("SELECT version_id FROM tags WHERE model = ? AND tag = ?", [model, tag]).fetchone()
    return None if row is None else row[0]


def tags(con: duckdb.DuckDBPyConnection, model: str | None = None) -> list[Tag]:
    """Every tag (of ``model``), by model and tag name."""
    rows = con.execute(
        "SELECT model, tag, version_id FROM tags WHERE ? IS NULL OR model = ? ORDER BY model, tag",
        [model, model]).fetchall()
    return [Tag(*r) for r in rows]


def tags_of_versions(con: duckdb.DuckDBPyConnection, version_ids: list[str]) -> list[Tag]:
    if not version_ids:
        return []
    rows = con.execute("SELECT model, tag, version_id FROM tags WHERE list_contains(?, version_id) "
                       "ORDER BY model, tag", [version_ids]).fetchall()
    return [Tag(*r) for r in rows]


def history(con: duckdb.DuckDBPyConnection, model: str | None = None, tag: str | None = None) -> list[TagMove]:
    """Moves of every tag (of ``model``, named ``tag``), oldest first."""
    rows = con.execute(
        "SELECT model, tag, version_id, author, moved_at, seq FROM tag_history "
        "WHERE (? IS NULL OR model = ?) AND (? IS NULL OR tag = ?) ORDER BY moved_at, model, tag, seq",
        [model, model, tag, tag]).fetchall()
    return [TagMove(*r) for r in rows]


def _record(con: duckdb.DuckDBPyConnection, model: str, tag: str, version_id: str | None, author: str,
            now: datetime) -> None:
    seq = con.execute("SELECT coalesce(max(seq), 0) + 1 FROM tag_history WHERE model = ? AND tag = ?",
                      [model, tag]).fetchone()[0]
    con.execute("INSERT INTO tag_history VALUES (?, ?, ?, ?, ?, ?)", [model, tag, version_id, author, now, seq])


def set_tag(con: duckdb.DuckDBPyConnection, model: str, tag: str, version_id: str, author: str,
            now: datetime) -> str | None:
    """Point ``model:tag`` at ``version_id`` (moving it when it exists); returns the previous target."""
    previous = target(con, model, tag)
    if previous == version_id:
        return previous
    con.execute("INSERT OR REPLACE INTO tags VALUES (?, ?, ?)", [model, tag, version_id])
    _record(con, model, tag, version_id, author, now)
    return previous


def delete_tag(con: duckdb.DuckDBPyConnection, model: str, tag: str, author: str, now: datetime) -> str | None:
    """Remove ``model:tag``; returns the version it named (None: there was no such tag)."""
    previous = target(con, model, tag)
    if previous is not None:
        con.execute("DELETE FROM tags WHERE model = ? AND tag = ?", [model, tag])
        _record(con, model, tag, None, author, now)
    return previous
