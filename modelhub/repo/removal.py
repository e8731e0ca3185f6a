"""`dlv rm` (versions or whole models) and `dlv mv` (rename a model).

Only catalog rows are deleted, in one write transaction: a crash at any point leaves the
repository as it was before or after, never in between. The space is reclaimed by `dlv gc`
(blobs and tensor rows no version references any more).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb

from ..catalog import removal as catalog_removal
from ..catalog import tags as catalog_tags
from ..catalog import versions as catalog_versions
from ..errors import InputError
from .commit import default_author
from .records import Record
from .refs import check_model_name, resolve


@dataclass(frozen=True)
class Removed(Record):
    versions: tuple[str, ...]       # NAME@N of each removed version
    ids: tuple[str, ...]
    tags: tuple[str, ...]           # NAME:TAG of the tags that named them (deleted too)


def _refs(con: duckdb.DuckDBPyConnection, ids: list[str]) -> dict[str, str]:
    return {r.id: f"{r.model}@{r.seq}" for r in catalog_versions.version_refs(con) if r.id in set(ids)}


def remove(con: duckdb.DuckDBPyConnection, refs: list[str], *, model: bool = False, recursive: bool = False,
           author: str | None = None) -> Removed:
    """Remove the versions ``refs`` name (``model``: every version of the models they name).

    Versions that descend from them are removed with ``recursive``; otherwise they make it an InputError.
    """
    if not refs:
        raise InputError("name what to remove, e.g. `dlv rm resnet@3` or `dlv rm --model resnet`")
    ids: list[str] = []
    for ref in refs:
        if model:
            name = ref
            if not catalog_versions.model_exists(con, name):
                resolve(con, name)  # the unknown-name error with close matches
            ids.extend(sorted(catalog_versions.ids_of_model(con, name)))
        else:
            ids.append(resolve(con, ref))
    ids = sorted(set(ids))
    if recursive:
        ids = catalog_removal.descendants(con, ids)
    else:
        children = catalog_removal.children_outside(con, ids)
        if children:
            shown = ", ".join(sorted(_refs(con, children).values())[:8])
            raise InputError(
                f"cannot remove: {len(children)} other version(s) descend from it ({shown}); remove them too with "
                "`dlv rm -r` (--recursive; recursive=True in Python), or remove them first")
    names = _refs(con, ids)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    doomed = set(ids)
    tags = [t for t in catalog_tags.tags(con) if t.version_id in doomed]
    for t in tags:  # recorded in the tags' history before the rows go
        catalog_tags.delete_tag(con, t.model, t.tag, author or default_author(), now)
    catalog_removal.delete_versions(con, ids)
    return Removed(tuple(names[i] for i in ids), tuple(ids), tuple(f"{t.model}:{t.tag}" for t in tags))


def rename_model(con: duckdb.DuckDBPyConnection, old: str, new: str) -> None:
    check_model_name(new)
    if not catalog_versions.model_exists(con, old):
        resolve(con, old)  # the unknown-name error with close matches
    if old == new:
        raise InputError(f"model {old!r} already has that name")
    if catalog_versions.model_exists(con, new):
        raise InputError(f"model {new!r} already exists; choose another name (or `dlv rm --model {new}` first)")
    catalog_removal.rename_model(con, old, new)
