"""`dlv gc`: delete blobs and tensor rows that no version references.

Runs under the exclusive repository lock, so no commit can be half way.
Blobs younger than ``grace_s`` are kept even if unreferenced: a writer that
stages blobs before taking the lock (a long re-encode, a pull) must not
lose them to a concurrent gc -- the same reason git's prune has an expiry.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ..errors import IntegrityError
from .liveness import compute_liveness
from .records import Record

DEFAULT_GRACE_S = 3600.0


@dataclass(frozen=True)
class GcReport(Record):
    removed_blobs: int
    removed_bytes: int
    removed_tensor_rows: int
    removed_temp_files: int
    kept_young_blobs: int
    dry_run: bool


def collect_garbage(repo, *, grace_s: float = DEFAULT_GRACE_S, dry_run: bool = False) -> GcReport:
    now = time.time()
    with repo.catalog.write() as con:
        live = compute_liveness(con)
        if live.malformed:
            # Without a readable manifest we cannot tell which blobs that
            # tensor needs; deleting anything could make the damage permanent.
            raise IntegrityError(
                f"{len(live.malformed)} tensor row(s) have malformed manifests, so gc cannot tell what is garbage; "
                "run `dlv fsck` and restore the affected versions before collecting"
            )
        dead_tensors = [th for th in live.tensor_blobs if th not in live.live_tensors]
        live_blobs = live.live_blobs
        removed = removed_bytes = young = 0
        doomed: list[str] = []
        for blob in list(repo.store):
            if blob in live_blobs:
                continue
            path = repo.store.path_of(blob)
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if now - st.st_mtime < grace_s:
                young += 1
                continue
            doomed.append(blob)
            removed += 1
            removed_bytes += st.st_size
        temp_files = [p for p in repo.paths.objects.glob("*/.tmp-*") if now - p.stat().st_mtime >= grace_s]
        if not dry_run:
            for th in dead_tensors:
                con.execute("DELETE FROM tensor_data WHERE tensor_hash = ?", [th])
            for blob in doomed:
                con.execute("DELETE FROM objects WHERE blob_hash = ?", [blob])
            # Files are deleted while the lock is still held: once it is
            # released, a commit may deduplicate against an existing file
            # (ObjectStore.put skips present blobs), so a later delete could
            # remove a blob that has just become referenced. If we crash
            # before the transaction commits, the surviving rows name only
            # unreferenced blobs, which fsck --repair drops.
            for blob in doomed:
                repo.store.delete(blob)
            for p in temp_files:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
    return GcReport(removed, removed_bytes, len(dead_tensors), len(temp_files), young, dry_run)
