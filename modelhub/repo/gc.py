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

from ..catalog import features as catalog_features
from ..catalog import objects as catalog_objects
from ..errors import IntegrityError
from .reads import latest_version_ids
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
    removed_feature_files: int = 0
    removed_feature_bytes: int = 0
    removed_hot_files: int = 0     # hot copies of versions that are no longer their model's latest
    removed_hot_bytes: int = 0


def collect_garbage(repo, *, grace_s: float = DEFAULT_GRACE_S, dry_run: bool = False,
                    features: bool = False) -> GcReport:
    """Collect unreferenced blobs; ``features=True`` also drops the whole feature cache."""
    now = time.time()
    with repo.catalog.write() as con:
        from .liveness import compute_liveness  # codecs: only when collecting
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
            from .tensorstore import forget_tensors
            forget_tensors(con, dead_tensors)
            for blob in doomed:
                catalog_objects.delete_blob(con, blob)
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
        feature_files = _feature_garbage(repo.paths.features, now, grace_s, drop_all=features)
        feature_bytes = sum(_size(p) for p in feature_files)
        if not dry_run:
            for p in feature_files:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
            if features:
                catalog_features.forget_all(con)
        # hot copies: a cache of each model's latest version (hotcopy.py); a
        # stale one is never read (it names its version), only wastes space
        latest = latest_version_ids(con)
        hot_files = [repo.hot.path(v) for v in sorted(repo.hot.version_ids() - latest)]
        hot_files += repo.hot.stale_temp_files(older_than=now - grace_s)
        hot_bytes = sum(_size(p) for p in hot_files)
        if not dry_run:
            for p in hot_files:
                p.unlink(missing_ok=True)
    return GcReport(removed, removed_bytes, len(dead_tensors), len(temp_files), young, dry_run,
                    len(feature_files), feature_bytes, len(hot_files), hot_bytes)


def _feature_garbage(root, now: float, grace_s: float, *, drop_all: bool) -> list:
    """Feature-store files to delete.

    A chunk is an ``.npy`` plus its ``.json`` manifest, written in that
    order; a crash in between leaves one without the other, which no reader
    uses. Such halves (and temp files) older than the grace period go: the
    engine writes chunks without the catalog lock, so a younger half may be
    a write in flight. ``drop_all`` empties the cache: features are derived
    data that the next `evaluate` recomputes (run it when no evaluate runs).
    """
    if not root.exists():
        return []
    out = []
    for p in root.rglob("*"):
        if not p.is_file() or p.parent == root:  # planner measurements (profile.json) stay
            continue
        if drop_all:
            out.append(p)
            continue
        old = now - p.stat().st_mtime >= grace_s
        if p.name.startswith(".tmp-"):
            if old:
                out.append(p)
        elif p.suffix == ".npy" and not p.with_suffix(".json").exists() and old:
            out.append(p)
        elif p.suffix == ".json" and not p.with_suffix(".npy").exists() and old:
            out.append(p)
    return sorted(out)


def _size(p) -> int:
    try:
        return p.stat().st_size
    except FileNotFoundError:
        return 0
