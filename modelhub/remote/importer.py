"""Apply a :class:`CatalogExport` to a catalog inside the caller's write transaction.

Rows are deduplicated by identity: models by name, graphs, tensors and blobs
by content hash, versions by id (ids are global: a version keeps its id
everywhere). The rows that belong to a version (parents, hparams, metrics,
snapshots, files) or to a graph (nodes, edges) are added only together with
a newly added version or graph, so importing the same export twice changes
nothing.

Sequence numbers (NAME@N) are local: an imported version keeps its seq when
(model, seq) is free in the target, else it takes the model's next free seq
(max + 1). Versions are added parents first, so a lineage stays in order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import duckdb

from ..catalog.remotes import (RowsRejectedError, TableRows, ensure_model, insert_rows, next_seq, present_keys,
                               seq_taken)
from .errors import RemoteFormatError
from .export import GRAPH_CHILD_TABLES, VERSION_CHILD_TABLES
from .segments import CatalogExport


@dataclass(frozen=True)
class ImportedVersion:
    id: str
    model: str
    source_seq: int   # seq in the export (the remote's NAME@N)
    seq: int          # seq in the target catalog


@dataclass(frozen=True)
class ImportResult:
    versions: tuple[ImportedVersion, ...]
    new_tensors: tuple[str, ...]


class _Inserter:
    """Inserts rows by column name (:func:`catalog.remotes.insert_rows`); rows that do not fit
    are a :class:`RemoteFormatError` that says where they came from."""

    def __init__(self, con: duckdb.DuckDBPyConnection, where: str) -> None:
        self.con, self.where = con, where

    def insert(self, rows: TableRows, selected: Sequence[tuple[Any, ...]], *, ignore: bool = False) -> None:
        try:
            insert_rows(self.con, rows, selected, ignore=ignore)
        except RowsRejectedError as exc:
            raise RemoteFormatError(
                f"{self.where}: {exc}; the publisher may run a newer modelhub: upgrade modelhub") from None


def import_export(con: duckdb.DuckDBPyConnection, export: CatalogExport, where: str) -> ImportResult:
    ins = _Inserter(con, where)
    # Only the tables below are read: tables a newer publisher adds are ignored.
    ins.insert(export.table("models"), export.table("models").rows, ignore=True)

    graphs = export.table("graphs")
    new_graphs: set[str] = set()
    if graphs.rows:
        gi = graphs.columns.index("graph_hash")
        have = present_keys(con, "graphs", "graph_hash", [r[gi] for r in graphs.rows])
        fresh = _unique(graphs.rows, gi, have)
        new_graphs = {r[gi] for r in fresh}
        ins.insert(graphs, fresh)
    for t in GRAPH_CHILD_TABLES:
        rows = export.table(t)
        if rows.rows:
            gi = rows.columns.index("graph_hash")
            ins.insert(rows, [r for r in rows.rows if r[gi] in new_graphs])

    tensors = export.table("tensor_data")
    new_tensors: list[str] = []
    if tensors.rows:
        ti = tensors.columns.index("tensor_hash")
        have = present_keys(con, "tensor_data", "tensor_hash", [r[ti] for r in tensors.rows])
        fresh = _unique(tensors.rows, ti, have)
        new_tensors = [r[ti] for r in fresh]
        ins.insert(tensors, fresh)
    ins.insert(export.table("objects"), export.table("objects").rows, ignore=True)

    versions = export.table("versions")
    imported: list[ImportedVersion] = []
    if versions.rows:
        vi, mi, si = (versions.columns.index(c) for c in ("id", "model", "seq"))
        have = present_keys(con, "versions", "id", [r[vi] for r in versions.rows])
        fresh = _unique(_parents_first(versions, export.table("version_parents")), vi, have)
        for r in fresh:
            model, seq = r[mi], r[si]
            if seq_taken(con, model, seq):
                seq = next_seq(con, model)
            ensure_model(con, model)
            row = list(r)
            row[si] = seq
            ins.insert(versions, [tuple(row)])
            imported.append(ImportedVersion(r[vi], model, int(r[si]), int(seq)))
    new_ids = {v.id for v in imported}
    for t in VERSION_CHILD_TABLES:
        rows = export.table(t)
        if rows.rows:
            vi = rows.columns.index("version_id")
            ins.insert(rows, [r for r in rows.rows if r[vi] in new_ids])
    return ImportResult(tuple(imported), tuple(new_tensors))


def _unique(rows: Sequence[tuple], key: int, have: set) -> list[tuple]:
    """Rows whose key is not in ``have``, first occurrence wins."""
    seen = set(have)
    out = []
    for r in rows:
        if r[key] not in seen:
            seen.add(r[key])
            out.append(r)
    return out


def _parents_first(versions: TableRows, parents: TableRows) -> list[tuple]:
    vi = versions.columns.index("id")
    by_id = {r[vi]: r for r in versions.rows}
    deps: dict[str, list[str]] = {}
    if parents.rows:
        ci, pi = parents.columns.index("version_id"), parents.columns.index("parent_id")
        for r in parents.rows:
            deps.setdefault(r[ci], []).append(r[pi])
    order: list[tuple] = []
    done: set[str] = set()
    for root in by_id:
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            vid, expanded = stack.pop()
            if expanded:
                order.append(by_id[vid])
                continue
            if vid in done or vid not in by_id:
                continue
            done.add(vid)
            stack.append((vid, True))
            stack.extend((p, False) for p in reversed(deps.get(vid, [])))
    return order
