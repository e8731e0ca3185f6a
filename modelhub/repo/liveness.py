"""Which blobs and tensors the catalog keeps alive (shared by gc and fsck).

Any catalog column named ``blob_hash`` (files, staged, datasets, ...) keeps
its blob alive, and any column named ``tensor_hash`` (snapshot_tensors,
run_snapshot_tensors) keeps its tensor alive, so a capability that adds a
table with such a column is covered by gc and fsck without touching them.
Tensor blobs are reached through ``tensor_data.encoding`` manifests,
following delta bases.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from ..catalog import objects as catalog_objects
from . import tensorstore


@dataclass(frozen=True)
class Liveness:
    live_tensors: frozenset[str]          # reachable from snapshots, delta bases included
    tensor_blobs: dict[str, list[str]]    # tensor_hash -> its segment blobs (every tensor_data row)
    other_blobs: dict[str, list[str]]     # table.column -> blobs referenced there
    manifests: dict[str, dict]
    malformed: frozenset[str] = frozenset()   # tensor rows whose manifest cannot be read

    @property
    def live_blobs(self) -> set[str]:
        out: set[str] = set()
        for th in self.live_tensors:
            out.update(self.tensor_blobs.get(th, ()))
        for blobs in self.other_blobs.values():
            out.update(blobs)
        return out


def blob_columns(con) -> list[str]:
    """Tables (besides ``objects``) whose ``blob_hash`` column keeps blobs alive."""
    return catalog_objects.blob_columns(con)


def compute_liveness(con) -> Liveness:
    from ..storage import tensors as codec  # numpy and zstandard: not for commands that only read the catalog
    manifests: dict[str, dict] = {}
    malformed: set[str] = set()
    for th, enc in tensorstore.tensor_encodings(con).items():
        try:
            manifest = json.loads(enc)
            codec.manifest_blobs(manifest)
            codec.delta_base(manifest)
        except (ValueError, KeyError, TypeError, AttributeError):
            malformed.add(th)
            continue
        manifests[th] = manifest
    roots = tensorstore.referenced_tensors(con)
    live: set[str] = set()
    stack = list(roots)
    while stack:  # a live tensor keeps its delta base (and that base's base) alive
        th = stack.pop()
        if th in live:
            continue
        live.add(th)
        base = codec.delta_base(manifests[th]) if th in manifests else None
        if base:
            stack.append(base)
    other = {}
    for table in blob_columns(con):
        other[f"{table}.blob_hash"] = catalog_objects.blobs_in(con, table)
    return Liveness(
        live_tensors=frozenset(live),
        tensor_blobs={th: codec.manifest_blobs(m) for th, m in manifests.items()},
        other_blobs=other,
        manifests=manifests,
        malformed=frozenset(malformed),
    )
