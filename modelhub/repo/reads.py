"""Catalog reads shared by the repository operations."""
from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass

import duckdb
import torch

from ..errors import IntegrityError
from ..netdef import Graph
from ..tensorio import raw_to_tensor
from . import hotcopy
from .hotcopy import HotCopies
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
    return _parse_graph(row[0], version_id)


def _parse_graph(definition: str, version_id: str) -> Graph:
    try:
        return Graph.from_json(definition)
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


@dataclass(frozen=True)
class VersionHeader:
    """What a checkout needs besides the tensors, read in one query."""
    info: VersionInfo
    graph_json: str | None
    hparams: dict
    weights_meta: dict | None
    n_snapshots: int
    is_latest: bool

    def graph(self) -> Graph | None:
        return None if self.graph_json is None else _parse_graph(self.graph_json, self.info.id)


def version_header(con: duckdb.DuckDBPyConnection, version_id: str) -> VersionHeader:
    # Four small statements instead of seven: each DuckDB query costs
    # 0.5-1 ms, which is most of a checkout served from a hot copy (a single
    # statement with correlated subqueries measured slower, ~9 ms).
    row = con.execute(f"SELECT {_VERSION_COLS}, weights_meta, graph_hash FROM versions WHERE id = ?", [version_id]).fetchone()
    count, latest_seq = con.execute(
        "SELECT (SELECT count(*) FROM snapshots WHERE version_id = $1), (SELECT max(seq) FROM versions WHERE model = $2)",
        [version_id, row[1]],
    ).fetchone()
    parents, hparams = [], {}
    for kind, key, value in con.execute(
        "SELECT 'p', parent_id, ord FROM version_parents WHERE version_id = $1 "
        "UNION ALL SELECT 'h', key, value_json FROM hparams WHERE version_id = $1", [version_id]
    ).fetchall():
        if kind == "p":
            parents.append((int(value), key))
        else:
            hparams[key] = json.loads(value)
    graph_row = con.execute("SELECT definition FROM graphs WHERE graph_hash = ?", [row[10]]).fetchone() if row[10] else None
    return VersionHeader(
        info=_info(con, row[:9], tuple(p for _, p in sorted(parents))), graph_json=graph_row[0] if graph_row else None,
        weights_meta=json.loads(row[9]) if row[9] else None, n_snapshots=int(count), is_latest=row[2] == latest_seq,
        hparams=dict(sorted(hparams.items())),
    )


def load_state_dict(con, store, version_id: str, snap: int | None = None, *,
                    hot: HotCopies | None = None, header: VersionHeader | None = None,
                    ) -> "OrderedDict[str, torch.Tensor]":
    """A snapshot's tensors (default: the last one), bit-exact.

    With ``hot`` and the version's ``header``, the last snapshot of a model's
    latest version comes from its verified hot copy when there is one;
    otherwise it is decoded from the archive and the hot copy written for the
    next checkout (see hotcopy.py).
    """
    use_hot = (hot is not None and header is not None and snap in (None, header.n_snapshots - 1)
               and hotcopy.enabled())
    entries = snapshot_entries(con, version_id, header.n_snapshots - 1 if use_hot else snap)
    if use_hot:
        state = hot.read(version_id, entries)
        if state is not None:
            return state
    decoded = load_tensors(con, store, [th for _, th in entries])
    state = OrderedDict((name, raw_to_tensor(*decoded[th])) for name, th in entries)
    if use_hot and header.is_latest:
        refresh_hot_copy(hot, version_id, entries, state, set())
    return state


def latest_version_ids(con) -> set[str]:
    """The newest version of every model (the ones that keep hot copies)."""
    return {r[0] for r in con.execute("SELECT arg_max(id, seq) FROM versions GROUP BY model").fetchall()}


def refresh_hot_copy(hot: HotCopies, version_id: str, entries, tensors, evict: set[str]) -> None:
    """Write ``version_id``'s hot copy and drop those of ``evict`` (other versions of its model).

    A cache: failing to write it (disk full, read-only repository) never
    fails the operation that asked for it.
    """
    if not hotcopy.enabled():
        return
    cap = hotcopy.max_bytes()
    try:
        hot.write(version_id, entries, tensors)  # removes its temp file if it fails
        hot.retain({version_id}, among=evict)
        hot.enforce_cap(cap, keep=version_id)
    except OSError:
        pass  # the next checkout decodes from the archive and tries again


def weights_meta(con, version_id: str) -> dict | None:
    row = con.execute("SELECT weights_meta FROM versions WHERE id = ?", [version_id]).fetchone()
    return json.loads(row[0]) if row and row[0] else None


def latest_metrics(con, version_id: str) -> dict[str, float]:
    rows = con.execute(
        "SELECT name, arg_max(value, step) FROM metrics WHERE version_id = ? GROUP BY name ORDER BY name", [version_id]
    ).fetchall()
    return {n: v for n, v in rows}
