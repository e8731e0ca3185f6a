"""`dlv desc`: one version in detail."""
from __future__ import annotations

import json

from .reads import hparams_of, n_snapshots, snapshot_entries, version_graph, version_info
from .records import FileInfo, LayerInfo, MetricSummary, TensorInfo, VersionDescription


def describe(con, version_id: str) -> VersionDescription:
    info = version_info(con, version_id)
    graph = version_graph(con, version_id)
    layers = tuple(LayerInfo(n.name, n.op, n.attrs, n.n_params) for n in graph.layers) if graph else ()
    entries = snapshot_entries(con, version_id)
    meta = {
        th: (dtype, tuple(json.loads(shape)))
        for th, dtype, shape in con.execute(
            "SELECT tensor_hash, dtype, shape FROM tensor_data WHERE tensor_hash IN "
            "(SELECT tensor_hash FROM snapshot_tensors WHERE version_id = ?)", [version_id]
        ).fetchall()
    }
    tensors = []
    for name, th in entries:
        dtype, shape = meta[th]
        numel = 1
        for d in shape:
            numel *= d
        tensors.append(TensorInfo(name, dtype, shape, numel, th))
    metrics = tuple(
        MetricSummary(name=r[0], last_step=int(r[1]), last=r[2], min=r[3], max=r[4], n_points=int(r[5]))
        for r in con.execute(
            "SELECT name, max(step), arg_max(value, step), min(value), max(value), count(*) "
            "FROM metrics WHERE version_id = ? GROUP BY name ORDER BY name", [version_id]
        ).fetchall()
    )
    files = tuple(
        FileInfo(p, int(s), h) for p, s, h in con.execute(
            "SELECT path, size, blob_hash FROM files WHERE version_id = ? ORDER BY path", [version_id]
        ).fetchall()
    )
    children = tuple(
        r[0] for r in con.execute(
            "SELECT version_id FROM version_parents WHERE parent_id = ? ORDER BY version_id", [version_id]
        ).fetchall()
    )
    return VersionDescription(
        version=info, traced=graph.traced if graph else None, rebuildable=graph.rebuildable if graph else None,
        layers=layers, tensors=tuple(tensors), hparams=hparams_of(con, version_id), metrics=metrics,
        files=files, children=children, n_snapshots=n_snapshots(con, version_id),
    )

