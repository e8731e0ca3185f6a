"""A version's snapshots (table snapshots): checkpoints in commit order, the last being
the version's weights. Their tensors are in :mod:`.tensors` (``snapshot_tensors``)."""
from __future__ import annotations

import duckdb

from .bulk import insert_rows


def count(con: duckdb.DuckDBPyConnection, version_id: str) -> int:
    """How many snapshots ``version_id`` holds (its weights are snapshot ``count - 1``)."""
    return int(con.execute("SELECT count(*) FROM snapshots WHERE version_id = ?", [version_id]).fetchone()[0])


def insert_snapshots(con: duckdb.DuckDBPyConnection, version_id: str, steps: list[int | None]) -> None:
    """Snapshots 0..len(steps)-1 of a new version with their training steps (None: unknown)."""
    insert_rows(con, "snapshots", [[version_id, snap, step, None] for snap, step in enumerate(steps)])
