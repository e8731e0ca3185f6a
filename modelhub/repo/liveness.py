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

from ..storage import tensors as codec


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
    rows = con.execute(
        "SELECT table_name FROM information_schema.columns WHERE column_name = 'blob_hash' "
        "AND table_name <> 'objects' AND table_catalog = current_database() ORDER BY table_name"
    ).fetchall()
    return [r[0] for r in rows]


def tensor_columns(con) -> list[str]:
    """Tables whose ``tensor_hash`` column keeps tensors alive: version snapshots, and the
    snapshots of runs not yet committed (everything but tensor_data, which holds the tensors)."""
    rows = con.execute(
        "SELECT table_name FROM information_schema.columns WHERE column_name = 'tensor_hash' "
        "AND table_name <> 'tensor_data' AND table_catalog = current_database() ORDER BY table_name"
    ).fetchall()
    return [r[0] for r in rows]


def compute_liveness(con) -> Liveness:
    manifests: dict[str, dict] = {}
    malformed: set[str] = set()
    for th, enc in con.execute("SELECT tensor_hash, encoding FROM tensor_data").fetchall():
        try:
            manifest = json.loads(enc)
            codec.manifest_blobs(manifest)
            codec.delta_base(manifest)
        except (ValueError, KeyError, TypeError, AttributeError):
            malformed.add(th)
            continue
        manifests[th] = manifest
    roots: set[str] = set()
    for table in tensor_columns(con):
        # table names come from the catalog's own information_schema, never from users
        roots.update(r[0] for r in con.execute(f'SELECT DISTINCT tensor_hash FROM "{table}"').fetchall())
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
        # table names come from the catalog's own information_schema, never from users
        other[f"{table}.blob_hash"] = [r[0] for r in con.execute(f'SELECT DISTINCT blob_hash FROM "{table}"').fetchall()]
    return Liveness(
        live_tensors=frozenset(live),
        tensor_blobs={th: codec.manifest_blobs(m) for th, m in manifests.items()},
        other_blobs=other,
        manifests=manifests,
        malformed=frozenset(malformed),
    )
