"""Tensor content and which snapshot holds which tensor (tables tensor_data, snapshot_tensors).

Inside modelhub.repo only ``repo/tensorstore.py`` calls this module: it pairs
these rows with the storage codecs, so the archive can change encodings
without commit, checkout, gc or fsck knowing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb

from .bulk import insert_rows


@dataclass(frozen=True)
class TensorRow:
    """One ``tensor_data`` row. ``shape`` and ``manifest`` parse the stored JSON on access,
    so a malformed row fails where the caller can name it, not while listing rows."""
    tensor_hash: str
    dtype: str
    shape_json: str
    nbytes: int
    encoding_json: str

    @property
    def shape(self) -> list[int]:
        return json.loads(self.shape_json)

    @property
    def manifest(self) -> dict:
        return json.loads(self.encoding_json)


@dataclass(frozen=True)
class SnapshotTensor:
    """A named tensor of one snapshot of a version, with the version's ``model@seq``."""
    version_id: str
    snap: int
    name: str
    tensor_hash: str
    model: str
    seq: int


@dataclass(frozen=True)
class TensorUse:
    """A version that holds ``tensor_hash`` in some snapshot."""
    version_id: str
    tensor_hash: str


_TENSOR_COLS = "tensor_hash, dtype, shape, nbytes, encoding"


def _tensor(r) -> TensorRow:
    return TensorRow(r[0], r[1], r[2], int(r[3]), r[4])


# -- tensor_data ----------------------------------------------------------------------------
def known_hashes(con: duckdb.DuckDBPyConnection, tensor_hashes: list[str]) -> set[str]:
    """Which of ``tensor_hashes`` are already stored (one query for a whole batch)."""
    return {r[0] for r in con.execute("SELECT tensor_hash FROM tensor_data WHERE tensor_hash IN (SELECT unnest(?))",
                                      [list(dict.fromkeys(tensor_hashes))]).fetchall()}


def tensor_rows(con: duckdb.DuckDBPyConnection, tensor_hashes: list[str]) -> dict[str, TensorRow]:
    """The rows of ``tensor_hashes`` that exist, by hash (one query: a checkout's hot path)."""
    return {r[0]: _tensor(r) for r in con.execute(
        f"SELECT {_TENSOR_COLS} FROM tensor_data WHERE tensor_hash IN (SELECT unnest(?))",
        [list(dict.fromkeys(tensor_hashes))]).fetchall()}


def all_tensor_rows(con: duckdb.DuckDBPyConnection) -> list[TensorRow]:
    return [_tensor(r) for r in con.execute(f"SELECT {_TENSOR_COLS} FROM tensor_data").fetchall()]


def encodings(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Every tensor's manifest JSON, by hash (liveness: which blobs each tensor needs)."""
    return dict(con.execute("SELECT tensor_hash, encoding FROM tensor_data").fetchall())


def shape_json(con: duckdb.DuckDBPyConnection, tensor_hash: str) -> str | None:
    row = con.execute("SELECT shape FROM tensor_data WHERE tensor_hash = ?", [tensor_hash]).fetchone()
    return row[0] if row else None


def dtypes_and_shapes_of_version(con: duckdb.DuckDBPyConnection, version_id: str) -> dict[str, tuple[str, str]]:
    """(dtype, shape JSON) of every tensor any snapshot of ``version_id`` holds, by hash."""
    return {th: (dtype, shape) for th, dtype, shape in con.execute(
        "SELECT tensor_hash, dtype, shape FROM tensor_data WHERE tensor_hash IN "
        "(SELECT tensor_hash FROM snapshot_tensors WHERE version_id = ?)", [version_id]).fetchall()}


def count_tensors(con: duckdb.DuckDBPyConnection) -> int:
    return int(con.execute("SELECT count(*) FROM tensor_data").fetchone()[0])


def insert_tensors(con: duckdb.DuckDBPyConnection, rows: list[TensorRow]) -> None:
    insert_rows(con, "tensor_data", [[r.tensor_hash, r.dtype, r.shape_json, r.nbytes, r.encoding_json] for r in rows])


def set_encoding(con: duckdb.DuckDBPyConnection, tensor_hash: str, encoding_json: str) -> None:
    """Point a tensor at a new encoding (the archive's re-encode; the content hash stays)."""
    con.execute("UPDATE tensor_data SET encoding = ? WHERE tensor_hash = ?", [encoding_json, tensor_hash])


def delete_tensor(con: duckdb.DuckDBPyConnection, tensor_hash: str) -> None:
    con.execute("DELETE FROM tensor_data WHERE tensor_hash = ?", [tensor_hash])


# -- snapshot_tensors -----------------------------------------------------------------------
def snapshot_entries(con: duckdb.DuckDBPyConnection, version_id: str, snap: int) -> list[tuple[str, str]]:
    """(tensor name, tensor hash) of one snapshot in committed order."""
    return [(r[0], r[1]) for r in con.execute(
        "SELECT name, tensor_hash FROM snapshot_tensors WHERE version_id = ? AND snap = ? ORDER BY ord",
        [version_id, snap]).fetchall()]


def insert_snapshot_entries(con: duckdb.DuckDBPyConnection, version_id: str,
                            snapshots: list[tuple[int, list[tuple[str, str]]]]) -> None:
    """The named tensors of each (snapshot index, [(name, hash), ...]) in committed order."""
    insert_rows(con, "snapshot_tensors", [[version_id, snap, i, name, th] for snap, entries in snapshots
                                          for i, (name, th) in enumerate(entries)])


def all_snapshot_tensors(con: duckdb.DuckDBPyConnection) -> list[SnapshotTensor]:
    """Every snapshot's tensors, by model, sequence number, snapshot and committed order."""
    return [SnapshotTensor(r[0], int(r[1]), r[2], r[3], r[4], int(r[5])) for r in con.execute(
        "SELECT s.version_id, s.snap, s.name, s.tensor_hash, v.model, v.seq FROM snapshot_tensors s "
        "JOIN versions v ON v.id = s.version_id ORDER BY v.model, v.seq, s.snap, s.ord").fetchall()]


def weights_tensors(con: duckdb.DuckDBPyConnection) -> list[TensorUse]:
    """The tensors of every version's last snapshot (its weights), one row per tensor entry."""
    return [TensorUse(v, th) for v, th in con.execute(
        "SELECT s.version_id, s.tensor_hash FROM snapshot_tensors s JOIN "
        "(SELECT version_id, max(snap) AS snap FROM snapshots GROUP BY version_id) l "
        "ON l.version_id = s.version_id AND l.snap = s.snap").fetchall()]


def tensor_uses(con: duckdb.DuckDBPyConnection) -> list[TensorUse]:
    """Each distinct (version, tensor) pair over all snapshots."""
    return [TensorUse(v, th) for v, th in con.execute(
        "SELECT DISTINCT version_id, tensor_hash FROM snapshot_tensors").fetchall()]


def referenced_hashes(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Every tensor some snapshot holds (the roots of liveness): any table with a ``tensor_hash``
    column besides tensor_data keeps its tensors alive -- version snapshots, and the snapshots of
    runs not yet committed (run_snapshot_tensors)."""
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.columns WHERE column_name = 'tensor_hash' "
        "AND table_name <> 'tensor_data' AND table_catalog = current_database() ORDER BY table_name").fetchall()]
    out: set[str] = set()
    for table in tables:
        # table names come from the catalog's own information_schema, never from users
        out.update(r[0] for r in con.execute(f'SELECT DISTINCT tensor_hash FROM "{table}"').fetchall())
    return out


def dangling_uses(con: duckdb.DuckDBPyConnection) -> list[TensorUse]:
    """Snapshot entries naming a tensor that ``tensor_data`` lacks (fsck)."""
    return [TensorUse(v, th) for v, th in con.execute(
        "SELECT version_id, tensor_hash FROM snapshot_tensors WHERE tensor_hash NOT IN (SELECT tensor_hash FROM tensor_data)"
    ).fetchall()]


def logical_bytes(con: duckdb.DuckDBPyConnection) -> int:
    """Raw bytes of every snapshot of every version counted as a full copy (what the archive saves against)."""
    return int(con.execute(
        "SELECT coalesce(sum(t.nbytes), 0) FROM snapshot_tensors s JOIN tensor_data t USING (tensor_hash)"
    ).fetchone()[0])
