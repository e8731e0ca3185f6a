"""Catalog segments: immutable, self-describing exports of catalog rows (docs/REMOTE.md).

A segment is zstd-compressed JSON::

    {"format": "modelhub-segment", "version": 1, "id": "<uuid hex>", "created_at": "...",
     "publisher": "...", "schema_version": 1,
     "tables": {"versions": {"columns": ["id", ...], "rows": [[...], ...]}, ...}}

Timestamps are ISO-8601 strings; NaN and infinities use the JSON extensions
``NaN``/``Infinity`` (metric series keep diverged values). Structure is
checked here; row contents are checked by :mod:`.validate` before use.
"""
from __future__ import annotations

import io
import json
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

import zstandard

from ..catalog.remotes import TableRows
from .errors import RemoteFormatError

SEGMENT_FORMAT = 1
#: a decompressed segment larger than this is refused (guards against zstd bombs)
MAX_SEGMENT_BYTES = 1 << 30
#: default cap on the uncompressed bytes of every segment read together (CatalogBudget)
DEFAULT_MAX_CATALOG_BYTES = 512 << 20


@dataclass(frozen=True)
class CatalogExport:
    """Rows of some catalog tables; what a segment carries and what an import applies."""
    tables: tuple[TableRows, ...]

    def table(self, name: str) -> TableRows:
        for t in self.tables:
            if t.name == name:
                return t
        return TableRows(name, (), ())

    @property
    def version_ids(self) -> list[str]:
        return self.table("versions").column("id") if self.table("versions").rows else []

    @property
    def blob_sizes(self) -> dict[str, int]:
        t = self.table("objects")
        return {r["blob_hash"]: r["size"] for r in t.dicts()}

    @property
    def n_rows(self) -> int:
        return sum(len(t.rows) for t in self.tables)


@dataclass(frozen=True)
class CatalogSegment:
    """One decoded catalog segment: what a publish wrote (its rows, who and when)."""

    name: str
    id: str
    created_at: str
    publisher: str
    schema_version: int
    export: CatalogExport


def new_segment_name(now: datetime | None = None) -> tuple[str, str]:
    """(file name, id): names sort by creation time; the uuid makes concurrent names distinct."""
    now = now or datetime.now(timezone.utc)
    seg_id = uuid.uuid4().hex
    return f"{now.strftime('%Y%m%d%H%M%S%f')}-{seg_id}.json.zst", seg_id


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def encode_segment(export: CatalogExport, *, publisher: str, schema_version: int,
                   now: datetime | None = None) -> tuple[str, bytes]:
    now = now or datetime.now(timezone.utc)
    name, seg_id = new_segment_name(now)
    doc = {
        "format": "modelhub-segment", "version": SEGMENT_FORMAT, "id": seg_id,
        "created_at": now.replace(tzinfo=None).isoformat(), "publisher": publisher,
        "schema_version": schema_version,
        "tables": {t.name: {"columns": list(t.columns), "rows": [[_plain(v) for v in r] for r in t.rows]}
                   for t in export.tables},
    }
    body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return name, zstandard.ZstdCompressor(level=10).compress(body)


class CatalogBudget:
    """The uncompressed bytes one read of a remote's catalog may decode, all segments together.

    Decoded JSON takes several times its size in memory, so a remote with
    many large segments (or one hostile one just under the per-segment cap)
    could exhaust memory; past the budget the read stops with a message.
    Shared by the threads that decode segments.
    """

    def __init__(self, limit: int | None = None) -> None:
        self.limit = max_catalog_bytes() if limit is None else int(limit)
        self.used = 0
        self._guard = threading.Lock()

    def left(self) -> int:
        with self._guard:
            return max(0, self.limit - self.used)

    def take(self, n: int, where: str) -> None:
        with self._guard:
            self.used += n
            over = self.used > self.limit
        if over:
            raise RemoteFormatError(
                f"the remote's catalog is larger than {self.limit} bytes uncompressed (at {where}); refusing it, the "
                "remote is damaged or hostile; if you trust it, raise DLV_REMOTE_MAX_CATALOG_BYTES")


def max_catalog_bytes() -> int:
    """DLV_REMOTE_MAX_CATALOG_BYTES (default 512 MiB): the budget of one read of a remote's catalog."""
    try:
        return max(1, int(os.environ.get("DLV_REMOTE_MAX_CATALOG_BYTES", DEFAULT_MAX_CATALOG_BYTES)))
    except ValueError:
        return DEFAULT_MAX_CATALOG_BYTES


def decode_segment(name: str, data: bytes, budget: "CatalogBudget | None" = None) -> CatalogSegment:
    """Decode one segment; ``budget`` caps the uncompressed bytes of all segments read together."""
    where = f"segment {name}"
    limit = MAX_SEGMENT_BYTES if budget is None else min(MAX_SEGMENT_BYTES, budget.left())
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
            body = reader.read(limit + 1)
    except zstandard.ZstdError as exc:
        raise RemoteFormatError(f"{where} is not zstd data ({exc}); the remote is damaged: delete that segment and re-publish") from None
    if len(body) > MAX_SEGMENT_BYTES:
        raise RemoteFormatError(f"{where} is larger than {MAX_SEGMENT_BYTES} bytes uncompressed; refusing it, the remote is damaged or hostile")
    if budget is not None:
        budget.take(len(body), where)
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RemoteFormatError(f"{where} is not valid JSON; the remote is damaged: delete that segment and re-publish") from None
    if not isinstance(doc, dict) or doc.get("format") != "modelhub-segment":
        raise RemoteFormatError(f"{where} is not a modelhub catalog segment; remove foreign files from catalog/segments/")
    version = doc.get("version")
    if not isinstance(version, int) or version > SEGMENT_FORMAT:
        raise RemoteFormatError(
            f"{where} has segment format {version!r}; this modelhub reads up to {SEGMENT_FORMAT}: upgrade modelhub")
    tables = doc.get("tables")
    if not isinstance(tables, dict):
        raise RemoteFormatError(f"{where} has no 'tables' object; the remote is damaged")
    out: list[TableRows] = []
    for tname, body_t in tables.items():
        cols = body_t.get("columns") if isinstance(body_t, dict) else None
        rows = body_t.get("rows") if isinstance(body_t, dict) else None
        if (not isinstance(cols, list) or not all(isinstance(c, str) for c in cols)
                or not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == len(cols) for r in rows)):
            raise RemoteFormatError(f"{where}: table {str(tname)[:40]!r} is malformed (columns/rows); the remote is damaged")
        out.append(TableRows(str(tname), tuple(cols), tuple(tuple(r) for r in rows)))
    return CatalogSegment(
        name=name, id=str(doc.get("id", "")), created_at=str(doc.get("created_at", "")),
        publisher=str(doc.get("publisher", "")), schema_version=int(doc.get("schema_version") or 0),
        export=CatalogExport(tuple(out)),
    )
