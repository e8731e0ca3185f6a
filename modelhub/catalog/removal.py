"""Deleting versions and renaming models (`dlv rm`, `dlv mv`): catalog rows only.

The blobs and tensor rows they leave unreferenced are garbage that `dlv gc` reclaims; each
operation runs in the caller's write transaction, so a crash leaves all of it or none.
"""
from __future__ import annotations

import duckdb

#: every table whose ``version_id`` column names the version a row belongs to (tests/test_habits.py checks
#: that a new table with such a column is listed here or in KEPT_ON_REMOVE)
VERSION_TABLES: tuple[str, ...] = (
    "version_parents", "hparams", "metrics", "snapshots", "snapshot_tensors", "files", "archive_costs", "tags",
)
#: tables whose version_id outlives the version on purpose: a tag's history says where it pointed,
#: a run's record says what it committed (its metrics and status stay browsable)
KEPT_ON_REMOVE: tuple[str, ...] = ("tag_history", "runs")


def delete_versions(con: duckdb.DuckDBPyConnection, version_ids: list[str]) -> None:
    """Delete ``version_ids`` and every row that belongs to them; models left without versions go too."""
    if not version_ids:
        return
    for table in VERSION_TABLES:
        con.execute(f"DELETE FROM {table} WHERE list_contains(?, version_id)", [version_ids])  # noqa: S608 - fixed names
    con.execute("DELETE FROM versions WHERE list_contains(?, id)", [version_ids])
    con.execute("DELETE FROM models WHERE name NOT IN (SELECT DISTINCT model FROM versions)")


def children_outside(con: duckdb.DuckDBPyConnection, version_ids: list[str]) -> list[str]:
    """Versions outside ``version_ids`` that name one of them as a parent."""
    return [r[0] for r in con.execute(
        "SELECT DISTINCT version_id FROM version_parents WHERE list_contains(?, parent_id) "
        "AND NOT list_contains(?, version_id) ORDER BY version_id", [version_ids, version_ids]).fetchall()]


def descendants(con: duckdb.DuckDBPyConnection, version_ids: list[str]) -> list[str]:
    """``version_ids`` and every version descending from them (any model)."""
    rows = con.execute(
        """WITH RECURSIVE d(id) AS (
               SELECT unnest(?::VARCHAR[])
               UNION
               SELECT p.version_id FROM version_parents p JOIN d ON p.parent_id = d.id)
           SELECT id FROM d ORDER BY id""", [version_ids]).fetchall()
    return [r[0] for r in rows]


def rename_model(con: duckdb.DuckDBPyConnection, old: str, new: str) -> None:
    """Model ``old`` becomes ``new``: its versions (ids unchanged), tags and their history."""
    created = con.execute("SELECT created_at FROM models WHERE name = ?", [old]).fetchone()[0]
    con.execute("INSERT INTO models VALUES (?, ?)", [new, created])
    con.execute("UPDATE versions SET model = ? WHERE model = ?", [new, old])
    con.execute("UPDATE tags SET model = ? WHERE model = ?", [new, old])
    con.execute("UPDATE tag_history SET model = ? WHERE model = ?", [new, old])
    con.execute("DELETE FROM models WHERE name = ?", [old])

