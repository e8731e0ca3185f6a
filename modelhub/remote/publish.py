"""`dlv publish REMOTE [REF...]`: send versions (and their ancestors) the remote lacks.

Order of durability on the remote: every blob first, the catalog segment
last, so a segment never names a missing blob. An interrupted publish leaves
only unreferenced blobs; running it again skips the blobs already there
(existence is checked, not assumed) and writes the segment. Nothing shared
is ever rewritten, so concurrent publishers cannot lose each other's work.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

from ..catalog import SCHEMA_VERSION
from ..catalog.remotes import version_ids_by_creation
from ..errors import IntegrityError
from ..repo.commit import default_author
from ..repo.reads import version_info
from ..repo.records import Record
from ..repo.refs import resolve
from .export import ancestors, export_versions
from .progress import NULL_PROGRESS, Progress
from .segments import encode_segment
from .transport import RemoteStore
from .view import WORKERS, read_index


@dataclass(frozen=True)
class PublishReport(Record):
    remote: str
    url: str
    versions: tuple[str, ...]          # refs (NAME@N, local numbering) of the versions sent
    version_ids: tuple[str, ...]
    already_there: int                 # versions asked for (with ancestors) the remote already had
    segment: str | None                # None: no new version (nothing sent, or only repaired blobs)
    segment_bytes: int
    blobs_sent: int
    bytes_sent: int                    # blob bytes uploaded (the segment is counted separately)
    blobs_skipped: int                 # blobs the remote already had
    bytes_skipped: int

    @property
    def total_bytes(self) -> int:
        return self.bytes_sent + self.segment_bytes


def publish(repo, remote: RemoteStore, refs: Sequence[str] = (), *, repair: bool = False,
            progress: Progress = NULL_PROGRESS) -> PublishReport:
    """Send ``refs`` (default: every version) and their ancestors. ``repair`` re-sends every blob
    of those versions, even the ones the remote has (overwriting a damaged copy is safe: the
    name fixes the content, and each write replaces the object atomically)."""
    with repo.catalog.read() as con:
        if refs:
            roots = [resolve(con, r) for r in refs]
        else:
            roots = version_ids_by_creation(con)
        closure = ancestors(con, roots)
    remote.ensure_header()
    index = read_index(remote, progress, allow_new=True)
    on_remote = index.version_ids
    to_send = [v for v in closure if v not in on_remote]
    if not to_send and not repair:
        return PublishReport(remote.name, remote.url, (), (), len(closure), None, 0, 0, 0, 0, 0)
    with repo.catalog.read() as con:
        export = export_versions(con, to_send) if to_send else None
        checked = export_versions(con, closure) if repair else export
        refs_sent = tuple(version_info(con, v).ref for v in to_send)

    sizes = checked.blob_sizes
    # Blobs a committed segment names exist (segments are written last); the rest are checked.
    unknown = [] if repair else [b for b in sorted(sizes) if b not in index.blob_sizes]
    with ThreadPoolExecutor(WORKERS) as pool:
        present = dict(zip(unknown, pool.map(remote.has_blob, unknown)))
    missing = sorted(sizes) if repair else [b for b in unknown if not present[b]]
    missing_set = set(missing)
    skipped = [b for b in sizes if b not in missing_set]

    def upload(blob: str) -> None:
        data = repo.store.get(blob)  # verified: a corrupt local blob is never published
        if len(data) != sizes[blob]:
            raise IntegrityError(f"local object {blob[:16]} has {len(data)} bytes but the catalog says {sizes[blob]}; run `dlv fsck`")
        remote.put_blob(blob, data)
        task.advance(len(data))

    with progress.task(f"publish to {remote.name}", sum(sizes[b] for b in missing)) as task:
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(upload, missing))  # list(): re-raise the first failure
    name, body = None, b""
    if export is not None:
        name, body = encode_segment(export, publisher=default_author(), schema_version=SCHEMA_VERSION)
        remote.write_segment(name, body)  # the commit point
    return PublishReport(
        remote=remote.name, url=remote.url, versions=refs_sent, version_ids=tuple(to_send),
        already_there=len(closure) - len(to_send), segment=name, segment_bytes=len(body),
        blobs_sent=len(missing), bytes_sent=sum(sizes[b] for b in missing),
        blobs_skipped=len(skipped), bytes_skipped=sum(sizes[b] for b in skipped),
    )
