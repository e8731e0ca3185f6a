"""`dlv stats`: logical versus stored bytes."""
from __future__ import annotations

from ..catalog import objects as catalog_objects
from ..catalog import versions as catalog_versions
from . import tensorstore
from .liveness import compute_liveness
from .records import RepoStats, VersionStats


def repo_stats(con, store) -> RepoStats:
    n_models = catalog_versions.count_models(con)
    n_versions = catalog_versions.count_versions(con)
    n_tensors = tensorstore.count_tensors(con)
    # Logical bytes count every snapshot of every version as a full copy
    # would: that is what the archive saves against.
    logical = tensorstore.logical_bytes(con)
    # Stored bytes count live blobs only; blobs a re-encode superseded stay on
    # disk until `dlv gc` and are reported apart, as reclaimable.
    sizes = catalog_objects.blob_sizes(con)
    live = compute_liveness(con).live_blobs
    stored = sum(sizes.get(b, 0) for b in live)
    n_objects = sum(1 for b in live if b in sizes)
    reclaimable = sum(size for b, size in sizes.items() if b not in live)
    files_bytes = catalog_objects.file_blob_bytes(con)
    from .archive import recreation_costs  # the archive's cost model (bytes read + produced)

    rc = recreation_costs(con)
    versions = tuple(
        VersionStats(id=v.id, ref=v.ref, logical_bytes=size, recreation_cost=rc.get(v.id))
        for v, size in catalog_versions.version_sizes(con)
    )
    return RepoStats(
        n_models=int(n_models), n_versions=int(n_versions), n_tensors=int(n_tensors), n_objects=int(n_objects),
        logical_bytes=int(logical), stored_bytes=int(stored), files_bytes=int(files_bytes), versions=versions,
        reclaimable_bytes=int(reclaimable),
    )
