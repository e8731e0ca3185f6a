"""`dlv fsck`: verify the catalog against the object store, and every checksum.

Problems are *errors* when a committed version is affected (a missing or
corrupt blob, a dangling reference) and *warnings* when they are harmless
leftovers of an interrupted operation (orphan blobs, temp files, stale
object rows). ``repair`` removes the leftovers; errors are reported with the
versions they affect, since only a remote or a backup can restore lost bytes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from ..storage_boundary import CorruptObjectError, MissingObjectError
from ..storage import tensors as codec
from ..catalog import graphs as catalog_graphs
from ..catalog import objects as catalog_objects
from ..catalog import versions as catalog_versions
from ..catalog.maintenance import check_catalog_storage
from . import tensorstore
from .liveness import compute_liveness
from .records import Record


@dataclass(frozen=True)
class FsckProblem(Record):
    severity: Literal["error", "warning"]
    kind: Literal["missing_blob", "corrupt_blob", "dangling_ref", "bad_tensor", "orphan_blob", "temp_file",
                  "stale_row", "stale_hot_copy", "bad_hot_copy"]
    subject: str       # blob / tensor / row identifier
    detail: str
    versions: tuple[str, ...] = ()   # refs of the versions affected
    repaired: bool = False


@dataclass(frozen=True)
class FsckReport(Record):
    blobs_checked: int
    tensors_checked: int
    versions_checked: int
    problems: tuple[FsckProblem, ...] = field(default_factory=tuple)

    @property
    def errors(self) -> tuple[FsckProblem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def ok(self) -> bool:
        return not self.errors


def check_repository(repo, *, repair: bool = False, deep: bool = False) -> FsckReport:
    problems: list[FsckProblem] = []
    scope = repo.catalog.write() if repair else repo.catalog.read()
    with scope as con:
        # 0. the catalog's own storage: every row reads back (DuckDB checks each
        # block's checksum) and a trial write on a scratch copy succeeds
        # (indexes, free list); damage raises CatalogCorruptError (exit 65)
        check_catalog_storage(con, repo.catalog.db_path)
        live = compute_liveness(con)
        versions_of_tensor = _versions_of_tensor(con)
        refs = {v.id: v.ref for v in catalog_versions.version_refs(con)}

        # 1. references between catalog tables
        for use in tensorstore.dangling_tensor_uses(con):
            problems.append(FsckProblem("error", "dangling_ref", use.tensor_hash, "snapshot references a tensor the catalog lacks",
                                        (refs.get(use.version_id, use.version_id),)))
        for link in catalog_versions.dangling_parents(con):
            problems.append(FsckProblem("error", "dangling_ref", link.parent_id, "parent version is missing",
                                        (refs.get(link.version_id, link.version_id),)))
        for missing in catalog_graphs.missing_graphs(con):
            problems.append(FsckProblem("error", "dangling_ref", missing.graph_hash, "network graph is missing",
                                        (refs.get(missing.version_id, missing.version_id),)))
        for th in sorted(live.malformed):
            problems.append(FsckProblem("error", "bad_tensor", th, "the catalog's manifest for this tensor is malformed",
                                        tuple(sorted(refs.get(v, v) for v in versions_of_tensor.get(th, ())))))
        for th in live.live_tensors:
            if th not in live.manifests and th not in live.malformed:
                problems.append(FsckProblem("error", "dangling_ref", th, "delta base tensor is missing",
                                            _affected(th, live, versions_of_tensor, refs)))

        # 2. every referenced blob exists and matches its hash
        owners: dict[str, set[str]] = {}
        for th in live.live_tensors:
            for blob in live.tensor_blobs.get(th, ()):
                owners.setdefault(blob, set()).add(th)
        for column, blobs in live.other_blobs.items():
            for blob in blobs:
                owners.setdefault(blob, set()).add(column)
        bad_blobs: set[str] = set()
        for blob in sorted(owners):
            try:
                repo.store.verify(blob)
            except MissingObjectError:
                bad_blobs.add(blob)
                problems.append(FsckProblem("error", "missing_blob", blob, "blob is referenced but absent",
                                            _affected_by_blob(owners[blob], live, versions_of_tensor, refs)))
            except CorruptObjectError as exc:
                bad_blobs.add(blob)
                problems.append(FsckProblem("error", "corrupt_blob", blob, str(exc).split(";")[0],
                                            _affected_by_blob(owners[blob], live, versions_of_tensor, refs)))

        # 3. deep: every live tensor decodes to bytes matching its hash
        tensors_checked = 0
        if deep:
            from .tensorstore import load_tensor
            from ..errors import ModelhubError
            for th in sorted(live.live_tensors):
                if th not in live.manifests or any(b in bad_blobs for b in live.tensor_blobs.get(th, ())):
                    continue
                tensors_checked += 1
                try:
                    load_tensor(con, repo.store, th)
                except ModelhubError as exc:
                    problems.append(FsckProblem("error", "bad_tensor", th, str(exc).split(";")[0],
                                                _affected(th, live, versions_of_tensor, refs)))

        # 4. leftovers: orphan blobs, object rows without files, temp files
        live_blobs = set(owners)
        on_disk = set(repo.store)
        for blob in sorted(on_disk - live_blobs):
            problems.append(FsckProblem("warning", "orphan_blob", blob, "no version references this blob (`dlv gc` removes it)",
                                        repaired=repair))
            if repair:
                repo.store.delete(blob)
                catalog_objects.delete_blob(con, blob)
        for blob in catalog_objects.listed_blobs(con):
            if blob not in on_disk and blob not in live_blobs:
                problems.append(FsckProblem("warning", "stale_row", blob, "catalog lists a blob that no version uses and that is absent",
                                            repaired=repair))
                if repair:
                    catalog_objects.delete_blob(con, blob)
        for tmp in sorted(repo.paths.objects.glob("*/.tmp-*")):
            problems.append(FsckProblem("warning", "temp_file", str(tmp.relative_to(repo.paths.dlv)),
                                        "leftover of an interrupted write", repaired=repair))
            if repair:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
        problems.extend(_check_hot_copies(repo, con, refs, repair))
        n_versions = len(refs)
        if not repair:   # a verified catalog: the moment for a backup, when one is due
            repo.catalog.backup_if_due()
    return FsckReport(len(owners), tensors_checked, n_versions, tuple(problems))


def _check_hot_copies(repo, con, refs: dict[str, str], repair: bool) -> list[FsckProblem]:
    """Hot copies are a cache (hotcopy.py): stale or damaged ones are warnings, since checkouts
    verify them and fall back to the archive; --repair deletes them."""
    from .reads import latest_version_ids, snapshot_entries

    out = []
    latest = latest_version_ids(con)
    for vid in sorted(repo.hot.version_ids()):
        if vid not in latest:
            kind, detail = "stale_hot_copy", "hot copy of a version that is not its model's latest (`dlv gc` removes it)"
        else:
            why = repo.hot.problem(vid, snapshot_entries(con, vid))
            if why is None:
                continue
            kind, detail = "bad_hot_copy", f"hot copy {why}; checkouts ignore it and decode from the archive"
        out.append(FsckProblem("warning", kind, f"hot/{vid[:16]}", detail, (refs.get(vid, vid[:12]),), repaired=repair))
        if repair:
            repo.hot.path(vid).unlink(missing_ok=True)
    for tmp in repo.hot.stale_temp_files(older_than=float("inf")):
        out.append(FsckProblem("warning", "temp_file", str(tmp.relative_to(repo.paths.dlv)),
                               "leftover of an interrupted write", repaired=repair))
        if repair:
            tmp.unlink(missing_ok=True)
    return out


def _versions_of_tensor(con) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for use in tensorstore.tensor_uses(con):
        out.setdefault(use.tensor_hash, set()).add(use.version_id)
    return out


def _affected(th: str, live, versions_of_tensor, refs) -> tuple[str, ...]:
    """Versions whose tensors are `th` or delta-encoded (transitively) against it."""
    dependents = {th}
    changed = True
    while changed:
        changed = False
        for other, manifest in live.manifests.items():
            if other not in dependents and codec.delta_base(manifest) in dependents:
                dependents.add(other)
                changed = True
    vids = set()
    for t in dependents:
        vids |= versions_of_tensor.get(t, set())
    return tuple(sorted(refs.get(v, v) for v in vids))


def _affected_by_blob(owners: set[str], live, versions_of_tensor, refs) -> tuple[str, ...]:
    out: set[str] = set()
    for owner in owners:
        if owner in live.manifests:
            out.update(_affected(owner, live, versions_of_tensor, refs))
        else:
            out.add(owner)  # a table.column holding the blob (files, datasets, ...)
    return tuple(sorted(out))
