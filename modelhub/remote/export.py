"""Export the catalog rows of a set of versions (what a segment or a pull carries).

The export is closed under what the versions need: their models, graphs,
every tensor of every snapshot plus the delta bases those tensors are stored
against (recursively), and an ``objects`` row (hash, size) for every blob the
tensors and attached files reference. Works on any catalog connection: the
local repository (publish) or a remote view (pull).
"""
from __future__ import annotations

import json
from typing import Iterable, Sequence

import duckdb

from ..catalog.remotes import TableRows, all_version_ids, parent_links, select_rows, table_columns
from ..errors import IntegrityError
from ..storage import tensors as codec
from .segments import CatalogExport

#: the tables a segment carries, in import order (owners before the rows that refer to them)
PUBLISHED_TABLES: tuple[str, ...] = (
    "models", "graphs", "graph_nodes", "graph_edges", "tensor_data", "objects",
    "versions", "version_parents", "hparams", "metrics", "snapshots", "snapshot_tensors", "files",
)
#: tables whose rows belong to one version (imported only with a newly imported version)
VERSION_CHILD_TABLES: tuple[str, ...] = (
    "version_parents", "hparams", "metrics", "snapshots", "snapshot_tensors", "files",
)
#: tables whose rows belong to one graph (imported only with a newly imported graph)
GRAPH_CHILD_TABLES: tuple[str, ...] = ("graph_nodes", "graph_edges")


def ancestors(con: duckdb.DuckDBPyConnection, version_ids: Iterable[str]) -> list[str]:
    """``version_ids`` and all their ancestors, parents before children (stable order)."""
    parents = parent_links(con)
    known = all_version_ids(con)
    order: list[str] = []
    seen: set[str] = set()
    for root in version_ids:
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:  # iterative post-order DFS: a parent is emitted before its children
            vid, expanded = stack.pop()
            if expanded:
                order.append(vid)
                continue
            if vid in seen or vid not in known:  # a parent absent here: lineage kept as an id only
                continue
            seen.add(vid)
            stack.append((vid, True))
            stack.extend((p, False) for p in reversed(parents.get(vid, [])))
    return order


def _select(con: duckdb.DuckDBPyConnection, table: str, column: str, keys: Sequence[str]) -> TableRows:
    # table and column names are this module's constants, never input; keys are a bound parameter
    found = select_rows(con, table, column, keys)
    if table in ("graph_nodes", "snapshot_tensors", "metrics"):  # deterministic segments
        return TableRows(table, found.columns, tuple(sorted(found.rows, key=lambda r: tuple(str(v) for v in r[:3]))))
    return found


def tensor_closure(con: duckdb.DuckDBPyConnection, roots: Iterable[str]) -> TableRows:
    """tensor_data rows of ``roots`` and of every delta base they depend on."""
    wanted = set(roots)
    rows: dict[str, tuple] = {}
    cols: tuple[str, ...] = ()
    while wanted:
        part = _select(con, "tensor_data", "tensor_hash", sorted(wanted))
        cols = part.columns
        found = set()
        for r in part.rows:
            th = r[cols.index("tensor_hash")]
            rows[th] = r
            found.add(th)
            base = codec.delta_base(json.loads(r[cols.index("encoding")]))
            if base and base not in rows:
                found.add(base)
        missing = wanted - set(rows)
        if missing:
            raise IntegrityError(
                f"tensor {sorted(missing)[0][:16]} is referenced but has no tensor_data row; run `dlv fsck` on the source")
        wanted = {b for b in found if b not in rows}
    if not cols:
        cols = tuple(table_columns(con, "tensor_data"))
    return TableRows("tensor_data", cols, tuple(rows[k] for k in sorted(rows)))


def blobs_of(tensor_rows: TableRows, file_rows: TableRows) -> set[str]:
    out: set[str] = set()
    for enc in tensor_rows.column("encoding") if tensor_rows.rows else []:
        out.update(codec.manifest_blobs(json.loads(enc)))
    if file_rows.rows:
        out.update(file_rows.column("blob_hash"))
    return out


def export_versions(con: duckdb.DuckDBPyConnection, version_ids: Sequence[str]) -> CatalogExport:
    """Every row ``version_ids`` need (not their ancestors: callers pass the closure they want)."""
    ids = list(dict.fromkeys(version_ids))
    versions = _select(con, "versions", "id", ids)
    order = {v: i for i, v in enumerate(ids)}
    versions = TableRows("versions", versions.columns,
                         tuple(sorted(versions.rows, key=lambda r: order[r[versions.columns.index("id")]])))
    children = {t: _select(con, t, "version_id", ids) for t in VERSION_CHILD_TABLES}
    models = _select(con, "models", "name", sorted(set(versions.column("model")) if versions.rows else set()))
    graph_hashes = sorted({g for g in (versions.column("graph_hash") if versions.rows else []) if g})
    graphs = {t: _select(con, t, "graph_hash", graph_hashes) for t in ("graphs",) + GRAPH_CHILD_TABLES}
    roots = set(children["snapshot_tensors"].column("tensor_hash")) if children["snapshot_tensors"].rows else set()
    tensors = tensor_closure(con, roots)
    blobs = sorted(blobs_of(tensors, children["files"]))
    objects = _select(con, "objects", "blob_hash", blobs)
    missing = set(blobs) - set(objects.column("blob_hash") if objects.rows else [])
    if missing:
        raise IntegrityError(
            f"object {sorted(missing)[0][:16]} is referenced but has no objects row (size unknown); run `dlv fsck` on the source")
    objects = TableRows("objects", objects.columns, tuple(sorted(objects.rows)))
    by_name = {"models": models, "tensor_data": tensors, "objects": objects, "versions": versions, **graphs, **children}
    return CatalogExport(tuple(by_name[t] for t in PUBLISHED_TABLES))
