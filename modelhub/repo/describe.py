"""`dlv desc`: one version in detail."""
from __future__ import annotations

from ..catalog import files as catalog_files
from ..catalog import versions as catalog_versions
from .reads import hparams_of, n_snapshots, snapshot_entries, version_graph, version_info
from .tensorstore import version_tensor_types
from .records import FileInfo, LayerInfo, MetricSummary, TensorInfo, VersionDescription


def describe(con, version_id: str) -> VersionDescription:
    info = version_info(con, version_id)
    graph = version_graph(con, version_id)
    layers = tuple(LayerInfo(n.name, n.op, n.attrs, n.n_params) for n in graph.layers) if graph else ()
    entries = snapshot_entries(con, version_id)
    meta = version_tensor_types(con, version_id)
    tensors = []
    for name, th in entries:
        dtype, shape = meta[th]
        numel = 1
        for d in shape:
            numel *= d
        tensors.append(TensorInfo(name, dtype, shape, numel, th))
    metrics = tuple(
        MetricSummary(name=m.name, last_step=m.last_step, last=m.last, min=m.min, max=m.max, n_points=m.n_points)
        for m in catalog_versions.metric_series(con, version_id)
    )
    files = tuple(FileInfo(f.path, f.size, f.blob_hash) for f in catalog_files.version_files(con, version_id))
    children = catalog_versions.children_of(con, version_id)
    return VersionDescription(
        version=info, traced=graph.traced if graph else None, rebuildable=graph.rebuildable if graph else None,
        layers=layers, tensors=tuple(tensors), hparams=hparams_of(con, version_id), metrics=metrics,
        files=files, children=children, n_snapshots=n_snapshots(con, version_id),
    )

