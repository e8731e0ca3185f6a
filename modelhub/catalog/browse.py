"""Catalog reads of the web UI (modelhub/ui): tables, a version's page, curves, lineage, statistics.

Plain SQL over the catalog and plain data back, so that serving a page never
imports torch (the repository facade does). Every function takes the
connection of the caller's read scope.
"""
from __future__ import annotations

import math

import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from . import runs as run_queries
from . import versions as version_queries
from .runs import RunRow
from .versions import MetricSeries, VersionRow


@dataclass(frozen=True)
class VersionListing(VersionRow):
    """A version as the UI lists it: its ``versions`` row, parents, latest metrics and run."""
    parents: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)   # latest value (highest step) of each series
    run: RunRow | None = None


@dataclass(frozen=True)
class Layer:
    name: str
    op: str
    attrs: dict
    n_params: int


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    tensor_hash: str

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class VersionPage:
    version: VersionListing
    layers: tuple[Layer, ...]
    traced: bool | None
    tensors: tuple[Tensor, ...]
    hparams: dict
    metrics: tuple[MetricSeries, ...]
    files: tuple[tuple[str, int], ...]
    parents: tuple[tuple[str, str], ...]     # (id, ref)
    children: tuple[tuple[str, str], ...]
    snapshots: tuple[tuple[int, int | None], ...]   # (snap, step)


def version_rows(con, ids: Sequence[str] | None = None) -> list[VersionListing]:
    """Versions (all, newest first; or those of ``ids`` in that order) with latest metrics and runs."""
    if ids is None:
        rows = version_queries.version_rows(con)
    else:
        found = version_queries.versions_by_id(con, list(ids))
        rows = [found[i] for i in ids if i in found]
    vids = [v.id for v in rows]
    parents: dict[str, list[str]] = {}
    metrics: dict[str, dict[str, float]] = {}
    if vids:
        for vid, pid in con.execute(
                "SELECT version_id, parent_id FROM version_parents WHERE version_id IN (SELECT unnest(?)) "
                "ORDER BY version_id, ord", [vids]).fetchall():
            parents.setdefault(vid, []).append(pid)
        for vid, name, value in con.execute(
                "SELECT version_id, name, arg_max(value, step) FROM metrics WHERE version_id IN (SELECT unnest(?)) "
                "GROUP BY version_id, name ORDER BY name", [vids]).fetchall():
            metrics.setdefault(vid, {})[name] = value
    runs = run_queries.runs_of_versions(con, vids) if run_queries.has_runs_table(con) else {}
    return [VersionListing(**vars(v), parents=tuple(parents.get(v.id, ())), metrics=metrics.get(v.id, {}),
                           run=runs.get(v.id)) for v in rows]


def version_page(con, version_id: str) -> VersionPage:
    version = version_rows(con, [version_id])[0]
    graph = con.execute(
        "SELECT g.graph_hash, g.traced FROM versions v JOIN graphs g USING (graph_hash) WHERE v.id = ?",
        [version_id]).fetchone()
    layers: tuple[Layer, ...] = ()
    if graph:
        layers = tuple(Layer(n, op, json.loads(attrs), int(p)) for n, op, attrs, p in con.execute(
            "SELECT name, op, attrs, n_params FROM graph_nodes WHERE graph_hash = ? AND kind = 'call_module' "
            "ORDER BY idx", [graph[0]]).fetchall())
    last = con.execute("SELECT max(snap) FROM snapshots WHERE version_id = ?", [version_id]).fetchone()[0]
    tensors = tuple(Tensor(n, dt, tuple(json.loads(sh)), int(nb), th) for n, dt, sh, nb, th in con.execute(
        "SELECT s.name, t.dtype, t.shape, t.nbytes, s.tensor_hash FROM snapshot_tensors s "
        "JOIN tensor_data t USING (tensor_hash) WHERE s.version_id = ? AND s.snap = ? ORDER BY s.ord",
        [version_id, last]).fetchall())
    hparams = version_queries.hparams(con, version_id)
    metrics = tuple(version_queries.metric_series(con, version_id))
    files = tuple((p, int(s)) for p, s in con.execute(
        "SELECT path, size FROM files WHERE version_id = ? ORDER BY path", [version_id]).fetchall())
    parents = tuple((i, f"{m}@{s}") for i, m, s in con.execute(
        "SELECT p.id, p.model, p.seq FROM version_parents vp JOIN versions p ON p.id = vp.parent_id "
        "WHERE vp.version_id = ? ORDER BY vp.ord", [version_id]).fetchall())
    children = tuple((i, f"{m}@{s}") for i, m, s in con.execute(
        "SELECT c.id, c.model, c.seq FROM version_parents vp JOIN versions c ON c.id = vp.version_id "
        "WHERE vp.parent_id = ? ORDER BY c.model, c.seq", [version_id]).fetchall())
    snaps = tuple((int(s), None if st is None else int(st)) for s, st in con.execute(
        "SELECT snap, step FROM snapshots WHERE version_id = ? ORDER BY snap", [version_id]).fetchall())
    return VersionPage(version=version, layers=layers, traced=None if graph is None else bool(graph[1]),
                       tensors=tensors, hparams=hparams, metrics=metrics, files=files, parents=parents,
                       children=children, snapshots=snaps)


def metric_series(con, version_ids: Sequence[str]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{version id: {metric: [(step, value), ...]}} for the curves."""
    out: dict[str, dict[str, list[tuple[int, float]]]] = {v: {} for v in version_ids}
    if version_ids:
        for vid, name, step, value in con.execute(
                "SELECT version_id, name, step, value FROM metrics WHERE version_id IN (SELECT unnest(?)) "
                "ORDER BY version_id, name, step", [list(version_ids)]).fetchall():
            out[vid].setdefault(name, []).append((int(step), float(value)))
    return out


def model_names(con) -> list[str]:
    return version_queries.model_names(con)


def lineage(con, model: str) -> tuple[list[VersionListing], list[tuple[str, str]]]:
    """A model's versions, the versions of other models they descend from or that descend from
    them (one step), and the parent -> child edges between all of these."""
    own = [r[0] for r in con.execute("SELECT id FROM versions WHERE model = ? ORDER BY seq", [model]).fetchall()]
    edges = [(p, c) for p, c in con.execute(
        "SELECT parent_id, version_id FROM version_parents WHERE version_id IN (SELECT unnest(?)) "
        "OR parent_id IN (SELECT unnest(?)) ORDER BY version_id, ord", [own, own]).fetchall()]
    ids = list(dict.fromkeys(own + [v for e in edges for v in e]))
    return version_rows(con, ids), edges


def meta_diff(con, a: str, b: str) -> dict[str, list[tuple[str, str, Any, Any]]]:
    """What differs between two versions without reading a tensor: layers (op and attributes),
    tensors (content hash, dtype, shape), hyperparameters and latest metrics.
    Each section is a list of (key, status, old, new), status added | removed | changed | same."""
    pa, pb = version_page(con, a), version_page(con, b)
    layers = _compare({x.name: f"{x.op}({_attrs(x.attrs)})" for x in pa.layers},
                      {x.name: f"{x.op}({_attrs(x.attrs)})" for x in pb.layers})
    ta = {t.name: t for t in pa.tensors}
    tb = {t.name: t for t in pb.tensors}
    tensors = []
    for name in list(ta) + [n for n in tb if n not in ta]:
        x, y = ta.get(name), tb.get(name)
        if x is None or y is None:
            status = "added" if x is None else "removed"
        elif x.tensor_hash == y.tensor_hash:
            status = "same"
        elif (x.dtype, x.shape) != (y.dtype, y.shape):
            status = "reshaped"
        else:
            status = "changed"
        describe = (lambda t: None if t is None else f"{t.dtype}{list(t.shape)} {t.tensor_hash[:10]}")
        tensors.append((name, status, describe(x), describe(y)))
    metrics = _compare(pa.version.metrics, pb.version.metrics)
    return {"layers": layers, "tensors": tensors, "hparams": _compare(pa.hparams, pb.hparams), "metrics": metrics}


def _attrs(attrs: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(attrs.items()))


def _compare(old: dict, new: dict) -> list[tuple[str, str, Any, Any]]:
    out = []
    for key in list(old) + [k for k in new if k not in old]:
        if key not in new:
            out.append((key, "removed", old[key], None))
        elif key not in old:
            out.append((key, "added", None, new[key]))
        else:
            out.append((key, "same" if old[key] == new[key] else "changed", old[key], new[key]))
    return out


@dataclass(frozen=True)
class ArchiveStats:
    n_models: int
    n_versions: int
    n_snapshots: int
    n_tensor_refs: int          # tensors named by all snapshots (what full copies would store)
    n_tensors: int              # distinct tensors stored
    logical_bytes: int          # raw bytes of every snapshot as a full copy
    distinct_bytes: int         # raw bytes of the distinct tensors (after deduplication)
    stored_bytes: int           # blob bytes listed in the catalog (tensors, after compression, and files)
    files_bytes: int
    codecs: tuple[tuple[str, int, int, int], ...]   # (codec, tensors, raw bytes, delta-encoded tensors)
    per_model: tuple[tuple[str, int, int], ...]      # (model, versions, logical bytes of its latest version)
    plans: tuple[tuple[Any, ...], ...]               # archive_plans rows, newest first
    n_runs: int

    @property
    def ratio(self) -> float:
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else float("inf")


def archive_stats(con) -> ArchiveStats:
    one = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731 - fixed statements only
    codecs: dict[str, list[int]] = {}
    for encoding, nbytes in con.execute("SELECT encoding, nbytes FROM tensor_data").fetchall():
        try:
            manifest = json.loads(encoding)
        except ValueError:
            manifest = {}
        entry = codecs.setdefault(str(manifest.get("codec", "?")), [0, 0, 0])
        entry[0] += 1
        entry[1] += int(nbytes)
        entry[2] += 1 if manifest.get("base") or manifest.get("delta") else 0
    return ArchiveStats(
        n_models=int(one("SELECT count(*) FROM models")),
        n_versions=int(one("SELECT count(*) FROM versions")),
        n_snapshots=int(one("SELECT count(*) FROM snapshots")),
        n_tensor_refs=int(one("SELECT count(*) FROM snapshot_tensors")),
        n_tensors=int(one("SELECT count(*) FROM tensor_data")),
        logical_bytes=int(one("SELECT coalesce(sum(t.nbytes), 0) FROM snapshot_tensors s JOIN tensor_data t USING (tensor_hash)")),
        distinct_bytes=int(one("SELECT coalesce(sum(nbytes), 0) FROM tensor_data")),
        stored_bytes=int(one("SELECT coalesce(sum(size), 0) FROM objects")),
        files_bytes=int(one("SELECT coalesce(sum(size), 0) FROM files")),
        codecs=tuple((c, *v) for c, v in sorted(codecs.items())),
        per_model=tuple((m, int(n), int(b)) for m, n, b in con.execute(
            "SELECT model, count(*), arg_max(logical_bytes, seq) FROM versions GROUP BY model ORDER BY model").fetchall()),
        plans=tuple(con.execute(
            "SELECT plan_id, created_at, alpha, scheme, algorithm, stored_bytes, mst_bytes, spt_bytes "
            "FROM archive_plans ORDER BY plan_id DESC LIMIT 10").fetchall()),
        n_runs=int(one("SELECT count(*) FROM runs")) if run_queries.has_runs_table(con) else 0,
    )
