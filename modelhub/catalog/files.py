"""Files attached to versions and files staged for the next commit (tables files, staged)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb


@dataclass(frozen=True)
class StoredFile:
    """A file by its path relative to the working folder, and the blob holding its bytes."""
    path: str
    blob_hash: str
    size: int


@dataclass(frozen=True)
class StagedFile:
    path: str
    blob_hash: str
    size: int
    staged_at: datetime


def version_files(con: duckdb.DuckDBPyConnection, version_id: str) -> list[StoredFile]:
    """The files attached to ``version_id``, by path."""
    return [StoredFile(p, h, int(s)) for p, h, s in con.execute(
        "SELECT path, blob_hash, size FROM files WHERE version_id = ? ORDER BY path", [version_id]).fetchall()]


def attach_files(con: duckdb.DuckDBPyConnection, version_id: str, files: list[StoredFile]) -> None:
    for f in files:
        con.execute("INSERT INTO files VALUES (?, ?, ?, ?)", [version_id, f.path, f.blob_hash, f.size])


def staged_files(con: duckdb.DuckDBPyConnection) -> list[StagedFile]:
    """What `dlv add` staged, by path."""
    return [StagedFile(p, h, int(s), t) for p, h, s, t in con.execute(
        "SELECT path, blob_hash, size, staged_at FROM staged ORDER BY path").fetchall()]


def stage_file(con: duckdb.DuckDBPyConnection, f: StagedFile) -> None:
    """Stage a file (replacing an earlier staging of the same path)."""
    con.execute("INSERT OR REPLACE INTO staged VALUES (?, ?, ?, ?)", [f.path, f.blob_hash, f.size, f.staged_at])


def restage(con: duckdb.DuckDBPyConnection, files: list[StagedFile]) -> None:
    """Put back staged files that an operation's own commit consumed (``Repo.copy``)."""
    if files:
        con.executemany("INSERT INTO staged VALUES (?, ?, ?, ?)",
                        [[f.path, f.blob_hash, f.size, f.staged_at] for f in files])


def clear_staged(con: duckdb.DuckDBPyConnection) -> None:
    """Empty the staging area (a commit took its files)."""
    con.execute("DELETE FROM staged")


def unstage_file(con: duckdb.DuckDBPyConnection, path: str) -> bool:
    """Take ``path`` out of the staging area; False when it was not staged. Its blob becomes garbage for gc."""
    found = con.execute("SELECT count(*) FROM staged WHERE path = ?", [path]).fetchone()[0]
    con.execute("DELETE FROM staged WHERE path = ?", [path])
    return bool(found)
