"""Refuse hostile or malformed rows from a remote before they reach a catalog.

Rows name blobs (must be lowercase hex names, 64 or 80 digits: no path traversal through the
object store), file paths (relative, no '..', no backslashes: a checkout
must never write outside the working folder), tensor manifests (known
dtypes, sizes that match shapes) and graphs (the definition must hash to its
name; graphs are rebuilt from whitelisted layer types only, never code).
Anything else is a :class:`RemoteFormatError` that names the row.
"""
from __future__ import annotations

import json
import re
from typing import Any

from ..netdef import Graph
from ..repo.refs import NAME_RE
from ..storage import tensors as codec
from ..storage.objects import is_object_name   # object, tensor, version and graph names alike
from .errors import RemoteFormatError
from .segments import CatalogExport

#: columns that must hold an object/version/tensor/graph name wherever they appear
_HASH_COLUMNS = ("id", "version_id", "parent_id", "tensor_hash", "blob_hash", "graph_hash")


def _bad(where: str, what: str) -> RemoteFormatError:
    return RemoteFormatError(f"{where}: {what}; the remote is damaged or hostile, do not pull from it")


def check_file_path(path: Any, where: str) -> str:
    if not isinstance(path, str) or not path or "\x00" in path or "\\" in path or path.startswith("/"):
        raise _bad(where, f"file path {str(path)[:80]!r} is not a relative '/'-separated path")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or re.match(r"^[A-Za-z]:", path):
        raise _bad(where, f"file path {path[:80]!r} leaves the working folder")
    return path


def _check_manifest(row: dict, where: str) -> None:
    try:
        manifest = json.loads(row["encoding"])
        shape = json.loads(row["shape"])
    except (TypeError, ValueError):
        raise _bad(where, "tensor encoding or shape is not JSON") from None
    if not isinstance(manifest, dict):
        raise _bad(where, "tensor encoding is not a JSON object")
    dtype = row["dtype"]
    if dtype not in codec.DTYPE_SIZES or not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _bad(where, f"tensor dtype {str(dtype)[:20]!r} or shape {str(shape)[:40]} is not supported")
    n = 1
    for d in shape:
        n *= d
    if row["nbytes"] != n * codec.DTYPE_SIZES[dtype]:
        raise _bad(where, f"tensor size {row['nbytes']} does not match dtype {dtype} and shape {shape}")
    try:
        blobs = codec.manifest_blobs(manifest)
        base = codec.delta_base(manifest)
    except Exception:  # noqa: BLE001 - a malformed manifest, whatever the codec raised
        raise _bad(where, "tensor encoding is malformed") from None
    for b in list(blobs) + ([base] if base else []):
        if not is_object_name(b):
            raise _bad(where, f"tensor encoding names {str(b)[:80]!r}, which is not an object name")


def validate_export(export: CatalogExport, where: str, *, check_graphs: bool = True) -> None:
    for table in export.tables:
        hash_cols = [table.columns.index(c) for c in _HASH_COLUMNS if c in table.columns]
        for row in table.rows:
            for i in hash_cols:
                v = row[i]
                if v is not None and not is_object_name(v):
                    raise _bad(f"{where}, table {table.name}", f"{table.columns[i]} {str(v)[:80]!r} is not a name (64 or 80 hex digits)")
    for r in export.table("versions").dicts():
        if not isinstance(r.get("model"), str) or not NAME_RE.match(r["model"]):
            raise _bad(f"{where}, version {r.get('id', '?')[:12]}", f"model name {str(r.get('model'))[:80]!r} is invalid")
        if not isinstance(r.get("seq"), int) or r["seq"] < 1:
            raise _bad(f"{where}, version {r['id'][:12]}", "seq is not a positive integer")
    for r in export.table("models").dicts():
        if not isinstance(r.get("name"), str) or not NAME_RE.match(r["name"]):
            raise _bad(where, f"model name {str(r.get('name'))[:80]!r} is invalid")
    for r in export.table("files").dicts():
        check_file_path(r.get("path"), f"{where}, files of {r.get('version_id', '?')[:12]}")
    for r in export.table("objects").dicts():
        if not isinstance(r.get("size"), int) or r["size"] < 0:
            raise _bad(f"{where}, object {r['blob_hash'][:16]}", "declared size is not a non-negative integer")
    for r in export.table("tensor_data").dicts():
        _check_manifest(r, f"{where}, tensor {r['tensor_hash'][:16]}")
    if check_graphs:
        for r in export.table("graphs").dicts():
            try:
                ok = Graph.from_json(r["definition"]).hash == r["graph_hash"]
            except Exception:  # noqa: BLE001 - malformed JSON or fields, whatever the parser raised
                ok = False
            if not ok:
                raise _bad(f"{where}, graph {r['graph_hash'][:16]}", "the network definition does not match its hash")
