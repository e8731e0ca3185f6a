"""What a remote holds: the union of its catalog segments.

:func:`read_index` downloads, decodes and validates every segment.
:class:`RemoteView` loads them, oldest first, into a temporary DuckDB catalog
with the repository's own schema (``Catalog.create``), so references
(NAME, NAME@N, id prefixes) resolve and DQL runs exactly as on a local
repository -- without any weights. Duplicates across segments (two
publishers sending the same version or tensor) collapse by primary key; a
(model, seq) pair claimed by two different versions goes to the older
segment and the other version is numbered after the model's last version.
"""
from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..catalog import Catalog
from .errors import RemoteFormatError, RemoteUnavailableError
from .importer import import_export
from .progress import NULL_PROGRESS, Progress
from .segments import CatalogBudget, CatalogSegment, decode_segment
from .transport import HEADER_NAME, RemoteStore
from .validate import validate_export

#: parallel requests for small objects (segments, existence checks, blobs)
WORKERS = 8


@dataclass(frozen=True)
class RemoteIndex:
    name: str
    segments: tuple[CatalogSegment, ...]

    @property
    def version_ids(self) -> set[str]:
        return {v for s in self.segments for v in s.export.version_ids}

    @property
    def blob_sizes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.segments:
            out.update(s.export.blob_sizes)
        return out


def read_index(store: RemoteStore, progress: Progress = NULL_PROGRESS, *, allow_new: bool = False) -> RemoteIndex:
    """Every segment, decoded and validated. ``allow_new``: a remote nobody published to yet
    (no header) is empty rather than an error -- only publish may create one."""
    header = store.read_header()
    names = store.list_segments()
    if header is None and not names and not allow_new:
        raise RemoteUnavailableError(
            f"remote {store.name} ({store.url}) holds no modelhub catalog (no {HEADER_NAME}); "
            f"check the URL, or publish to it first with `dlv publish {store.name}`")
    if header is None and names:
        raise RemoteFormatError(
            f"remote {store.name} has catalog segments but no modelhub-remote.json header; it is damaged: re-create the header by publishing to it")

    budget = CatalogBudget()   # all segments together: bounded memory against a hostile remote

    def load(name: str) -> CatalogSegment:
        data = store.read_segment(name, max_bytes=budget.limit)
        seg = decode_segment(name, data, budget)
        validate_export(seg.export, f"remote {store.name}, segment {name}")
        task.advance(len(data))
        return seg

    with progress.task(f"catalog of {store.name}", None) as task:
        with ThreadPoolExecutor(WORKERS) as pool:
            segments = tuple(pool.map(load, names))
    return RemoteIndex(store.name, segments)


class RemoteView:
    """A temporary, read-only-by-convention catalog holding a remote's rows. Use as a context manager."""

    def __init__(self, index: RemoteIndex) -> None:
        self.index = index
        self._tmp = tempfile.TemporaryDirectory(prefix="dlv-remote-view-")
        tmp = Path(self._tmp.name)
        self.catalog = Catalog.create(tmp / "catalog.duckdb", tmp / "lock")
        with self.catalog.write() as con:
            for seg in index.segments:
                import_export(con, seg.export, f"remote {index.name}, segment {seg.name}")

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> "RemoteView":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
