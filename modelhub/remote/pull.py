"""`dlv pull REMOTE REF`: fetch a version and its ancestors, keeping ids and lineage
(`dlv pull REMOTE` without a REF, and `dlv clone`: every version of the remote).

Ancestors come whole (rows and blobs), so every local version can be
checked out and ``dlv fsck`` stays clean; blobs already in the local store
are not downloaded (frozen layers shared along a lineage cost nothing).
Order: every blob is downloaded, checked against its declared size and its
hash, and stored atomically; then ONE catalog transaction adds the rows and
decodes every new tensor against its tensor hash -- any mismatch rolls the
whole pull back. An interrupted pull leaves only unreferenced blobs (kept
by gc's grace period), which a re-run reuses.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..catalog import versions as catalog_versions
from ..catalog.remotes import present_tensor_hashes, present_version_ids
from ..repo.reads import version_info
from ..repo.records import Record
from ..repo.refs import resolve
from ..repo.tensorstore import load_tensor
from .export import ancestors, blobs_of, export_versions
from .importer import import_export
from .progress import NULL_PROGRESS, Progress
from .transport import RemoteStore
from .validate import validate_export
from .view import WORKERS, RemoteView, read_index


@dataclass(frozen=True)
class PulledVersion(Record):
    id: str
    remote_ref: str   # NAME@N on the remote
    ref: str          # NAME@N here (N differs when the local NAME@N was taken)


@dataclass(frozen=True)
class PullReport(Record):
    remote: str
    url: str
    id: str                                 # the version asked for ('' when everything was asked for)
    ref: str                                # its local reference ('' when everything was asked for)
    pulled: tuple[PulledVersion, ...]       # versions added (ancestors first); empty: already here
    blobs_fetched: int
    bytes_fetched: int
    blobs_reused: int                       # blobs of the pulled versions already here (not fetched)


def pull(repo, remote: RemoteStore, ref: str | None, *, progress: Progress = NULL_PROGRESS) -> PullReport:
    """Pull version ``ref`` (resolved on the remote) and its ancestors; ``ref=None``: every version there."""
    index = read_index(remote, progress)
    with RemoteView(index) as view:
        with view.catalog.read() as rcon:
            if ref is None:
                vid = ""
                closure = ancestors(rcon, [v.id for v in catalog_versions.version_refs(rcon)])
            else:
                # the name is looked up on the remote, so the hint lists the remote, not this repository
                vid = resolve(rcon, ref, listing=f"`dlv search {remote.name} 'select m'` lists the remote's versions")
                closure = ancestors(rcon, [vid])
            remote_refs = {v: version_info(rcon, v).ref for v in closure}
            with repo.catalog.read() as lcon:
                have = present_version_ids(lcon, closure)
            wanted = [v for v in closure if v not in have]
            export = export_versions(rcon, wanted) if wanted else None
    if export is None:
        with repo.catalog.read() as lcon:
            return PullReport(remote.name, remote.url, vid, version_info(lcon, vid).ref if vid else "", (), 0, 0, 0)
    validate_export(export, f"remote {remote.name}")

    with repo.catalog.read() as lcon:
        tensors = export.table("tensor_data")
        local_tensors = present_tensor_hashes(lcon, tensors.column("tensor_hash"))
    # Tensors already here keep their local encoding: only the others' blobs are needed.
    new_rows = type(tensors)(tensors.name, tensors.columns,
                             tuple(r for r in tensors.rows if r[tensors.columns.index("tensor_hash")] not in local_tensors))
    needed = sorted(blobs_of(new_rows, export.table("files")))
    sizes = export.blob_sizes
    # A blob already here may be an old orphan: touching it (as a put would)
    # keeps gc's grace period from collecting it before our rows land.
    missing = [b for b in needed if not repo.store.touch(b)]

    def fetch(blob: str) -> None:
        data = remote.get_blob(blob, sizes[blob])  # size and hash checked before anything is stored
        repo.store.put(data, blob_hash=blob)   # under the remote's name: an older one may be BLAKE2b
        task.advance(len(data))

    with progress.task(f"pull from {remote.name}", sum(sizes[b] for b in missing)) as task:
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(fetch, missing))  # list(): re-raise the first failure

    with repo.catalog.write() as con:
        # Under the lock no gc runs; one that ran before it may still have
        # collected a blob we found here: fetch those again now.
        for blob in needed:
            if not repo.store.has(blob):
                data = remote.get_blob(blob, sizes[blob])
                repo.store.put(data, blob_hash=blob)
        result = import_export(con, export, f"remote {remote.name}")
        for th in result.new_tensors:
            load_tensor(con, repo.store, th)  # decodes and checks the tensor hash; failure rolls back
        local_ref = version_info(con, vid).ref if vid else ""
    pulled = tuple(PulledVersion(v.id, remote_refs[v.id], f"{v.model}@{v.seq}") for v in result.versions)
    return PullReport(remote.name, remote.url, vid, local_ref, pulled, len(missing),
                      sum(sizes[b] for b in missing), len(blobs_of(tensors, export.table("files"))) - len(missing))
