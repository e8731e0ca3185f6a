"""A repository version as a weight source, and ``evaluate_progressive(repo, ref, inputs)``.

Only catalog reads (parameterized SQL) and object-store fetches: the network is
rebuilt from its stored graph *without* loading its weights, so the bytes a
query reads are exactly the segments it asked for.
"""
from __future__ import annotations

import json
from typing import Mapping, Optional

import torch

from ..netdef import Graph, rebuild
from .api import evaluate_module
from .driver import ProgressiveConfig
from .errors import ProgressiveInputError
from .report import ProgressiveReport
from .source import ManifestSource, TensorEntry

_ENTRY_SQL = "SELECT dtype, shape, nbytes, encoding FROM tensor_data WHERE tensor_hash = ?"


def _entry(con, name: str, tensor_hash: str) -> TensorEntry:
    row = con.execute(_ENTRY_SQL, [tensor_hash]).fetchone()
    if row is None:
        raise ProgressiveInputError(f"tensor {tensor_hash[:16]} ({name}) is referenced but not in the catalog; run `dlv fsck`")
    return TensorEntry(name, json.loads(row[3]), row[0], tuple(json.loads(row[1])), int(row[2]), tensor_hash)


def version_source(repo, version_id: str) -> ManifestSource:
    """Every tensor of the version's latest snapshot, read lazily through the object store."""
    with repo.catalog.read() as con:
        snap = con.execute("SELECT max(snap) FROM snapshot_tensors WHERE version_id = ?", [version_id]).fetchone()[0]
        rows = con.execute("SELECT name, tensor_hash FROM snapshot_tensors WHERE version_id = ? AND snap = ? "
                           "ORDER BY ord", [version_id, snap]).fetchall()
        entries = {name: _entry(con, name, th) for name, th in rows}
        sizes = dict(con.execute("SELECT blob_hash, size FROM objects").fetchall())

    def resolve_base(tensor_hash: str) -> TensorEntry:
        # delta bases belong to other versions: resolved on demand (their blobs count as read)
        with repo.catalog.read() as con:
            return _entry(con, "(delta base)", tensor_hash)

    return ManifestSource(entries, repo.store.get, resolve_base,
                          blob_size=lambda h: int(sizes[h]) if h in sizes else len(repo.store.get(h)))


def version_network(repo, version_id: str) -> torch.fx.GraphModule:
    with repo.catalog.read() as con:
        row = con.execute("SELECT g.definition FROM versions v JOIN graphs g USING (graph_hash) WHERE v.id = ?",
                          [version_id]).fetchone()
    if row is None:
        raise ProgressiveInputError(f"version {version_id[:12]} has no stored network graph; commit it from an "
                                    "nn.Module so its graph is captured")
    graph = Graph.from_json(row[0])
    if not graph.rebuildable:
        raise ProgressiveInputError(f"version {version_id[:12]}'s network cannot be rebuilt from its graph; "
                                    "evaluate it in Python with evaluate_module")
    return rebuild(graph)


def evaluate_progressive(repo, ref: str, inputs, top_k: int = 1, *, config: Optional[ProgressiveConfig] = None,
                         fallback: bool = True, compare: bool = False,
                         given: Optional[Mapping[str, torch.Tensor]] = None) -> ProgressiveReport:
    """Progressive top-k labels of version ``ref`` on preprocessed ``inputs`` [N, ...]."""
    from dataclasses import replace

    version_id = repo.resolve(ref)
    gm = version_network(repo, version_id)
    report = evaluate_module(gm, inputs, top_k=top_k, source=version_source(repo, version_id), config=config,
                             fallback=fallback, compare=compare, given=given)
    return replace(report, version=ref)
