"""Catalog reads shared by the repository operations."""
from __future__ import annotations

import json
from collections import OrderedDict

import duckdb
import torch

from ..errors import IntegrityError
from ..netdef import Graph
from ..tensorio import raw_to_tensor
from .records import VersionInfo
from .tensorstore import load_tensors

_VERSION_COLS = "id, model, seq, message, author, created_at, n_params, n_tensors, logical_bytes"


def version_info(con: duckdb.DuckDBPyConnection, version_id: str) -> VersionInfo:
    row = con.execute(f"SELECT {_VERSION_COLS} FROM versions WHERE id = ?", [version_id]).fetchone()
    return _info(con, row)


def all_versions(con: duckdb.DuckDBPyConnection, model: str | None = None) -> list[VersionInfo]:
    if model is None:
        rows = con.execute(f"SELECT {_VERSION_COLS} FROM versions ORDER BY created_at DESC, model, seq DESC").fetchall()
    else:
        rows = con.execute(
            f"SELECT {_VERSION_COLS} FROM versions WHERE model = ? ORDER BY seq DESC", [model]
        ).fetchall()
    parents: dict[str, list[str]] = {}
    for vid, pid in con.execute("SELECT version_id, parent_id FROM version_parents ORDER BY version_id, ord").fetchall():
        parents.setdefault(vid, []).append(pid)
    return [_info(con, r, tuple(parents.get(r[0], ()))) for r in rows]


def _info(con, row, parents: tuple[str, ...] | None = None) -> VersionInfo:
    if parents is None:
        parents = tuple(
            r[0] for r in con.execute(
                "SELECT parent_id FROM version_parents WHERE version_id = ? ORDER BY ord", [row[0]]
            ).fetchall()
        )
    return VersionInfo(
        id=row[0], model=row[1], seq=int(row[2]), message=row[3], author=row[4], created_at=row[5],
        parents=parents, n_params=int(row[6]), n_tensors=int(row[7]), logical_bytes=int(row[8]),
    )


def version_graph(con: duckdb.DuckDBPyConnection, version_id: str) -> Graph | None:
    row = con.execute(
        "SELECT g.definition FROM versions v JOIN graphs g USING (graph_hash) WHERE v.id = ?", [version_id]
    ).fetchone()
    if not row:
        return None
    try:
        return Graph.from_json(row[0])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise IntegrityError(
            f"the network definition of version {version_id[:12]} is malformed in the catalog; "
            "restore the version from a remote (`dlv pull`) or a backup"
        ) from None


def hparams_of(con: duckdb.DuckDBPyConnection, version_id: str) -> dict:
    rows = con.execute("SELECT key, value_json FROM hparams WHERE version_id = ? ORDER BY key", [version_id]).fetchall()
    return {k: json.loads(v) for k, v in rows}


def n_snapshots(con: duckdb.DuckDBPyConnection, version_id: str) -> int:
    return int(con.execute("SELECT count(*) FROM snapshots WHERE version_id = ?", [version_id]).fetchone()[0])


def snapshot_entries(con: duckdb.DuckDBPyConnection, version_id: str, snap: int | None = None) -> list[tuple[str, str]]:
    """(tensor name, tensor hash) of a snapshot in committed order; default: the last snapshot."""
    if snap is None:
        snap = n_snapshots(con, version_id) - 1
    return [
        (r[0], r[1]) for r in con.execute(
            "SELECT name, tensor_hash FROM snapshot_tensors WHERE version_id = ? AND snap = ? ORDER BY ord",
            [version_id, snap],
        ).fetchall()
    ]


def load_state_dict(con, store, version_id: str, snap: int | None = None) -> "OrderedDict[str, torch.Tensor]":
    entries = snapshot_entries(con, version_id, snap)
    decoded = load_tensors(con, store, [th for _, th in entries])
    return OrderedDict((name, raw_to_tensor(*decoded[th])) for name, th in entries)


def weights_meta(con, version_id: str) -> dict | None:
    row = con.execute("SELECT weights_meta FROM versions WHERE id = ?", [version_id]).fetchone()
    return json.loads(row[0]) if row and row[0] else None


def latest_metrics(con, version_id: str) -> dict[str, float]:
    rows = con.execute(
        "SELECT name, arg_max(value, step) FROM metrics WHERE version_id = ? GROUP BY name ORDER BY name", [version_id]
    ).fetchall()
    return {n: v for n, v in rows}
