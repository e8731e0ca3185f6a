"""`dlv stats`: logical versus stored bytes."""
from __future__ import annotations

from .liveness import compute_liveness
from .records import RepoStats, VersionStats


def repo_stats(con, store) -> RepoStats:
    n_models = con.execute("SELECT count(*) FROM models").fetchone()[0]
    n_versions = con.execute("SELECT count(*) FROM versions").fetchone()[0]
    n_tensors = con.execute("SELECT count(*) FROM tensor_data").fetchone()[0]
    # Logical bytes count every snapshot of every version as a full copy
    # would: that is what the archive saves against.
    logical = con.execute(
        "SELECT coalesce(sum(t.nbytes), 0) FROM snapshot_tensors s JOIN tensor_data t USING (tensor_hash)"
    ).fetchone()[0]
    # Stored bytes count live blobs only; blobs a re-encode superseded stay on
    # disk until `dlv gc` and are reported apart, as reclaimable.
    sizes = dict(con.execute("SELECT blob_hash, size FROM objects").fetchall())
    live = compute_liveness(con).live_blobs
    stored = sum(sizes.get(b, 0) for b in live)
    n_objects = sum(1 for b in live if b in sizes)
    reclaimable = sum(size for b, size in sizes.items() if b not in live)
    files_bytes = con.execute(
        "SELECT coalesce(sum(size), 0) FROM objects WHERE blob_hash IN (SELECT blob_hash FROM files UNION SELECT blob_hash FROM staged)"
    ).fetchone()[0]
    from .archive import recreation_costs  # the archive's cost model (bytes read + produced)

    rc = recreation_costs(con)
    versions = tuple(
        VersionStats(id=r[0], ref=f"{r[1]}@{r[2]}", logical_bytes=int(r[3]), recreation_cost=rc.get(r[0]))
        for r in con.execute("SELECT id, model, seq, logical_bytes FROM versions ORDER BY model, seq").fetchall()
    )
    return RepoStats(
        n_models=int(n_models), n_versions=int(n_versions), n_tensors=int(n_tensors), n_objects=int(n_objects),
        logical_bytes=int(logical), stored_bytes=int(stored), files_bytes=int(files_bytes), versions=versions,
        reclaimable_bytes=int(reclaimable),
    )
