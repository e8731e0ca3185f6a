"""Tags (aliases): NAME:TAG names one version of model NAME and can be moved; every move is kept.

As MLflow's model aliases: setting a tag that exists moves it (the history says who moved it, when,
and from where). Tags are local to the repository (publish and pull do not carry them).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import duckdb

from ..catalog import tags as catalog_tags
from ..catalog import versions as catalog_versions
from ..errors import InputError, RefError
from .commit import default_author
from .reads import version_info
from .records import Record
from .refs import check_model_name, check_tag_name, resolve


@dataclass(frozen=True)
class TagInfo(Record):
    model: str
    tag: str
    id: str             # the version it names
    ref: str            # that version as NAME@N

    @property
    def name(self) -> str:
        return f"{self.model}:{self.tag}"


@dataclass(frozen=True)
class TagChange(Record):
    """What `tag`/`untag` did: ``previous`` None = a new tag; ``current`` None = deleted."""
    model: str
    tag: str
    previous: str | None    # NAME@N it named before
    current: str | None     # NAME@N it names now


@dataclass(frozen=True)
class TagMoveInfo(Record):
    model: str
    tag: str
    ref: str | None         # NAME@N it was moved to; None: deleted
    author: str
    moved_at: datetime


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _ref_of(con: duckdb.DuckDBPyConnection, version_id: str | None) -> str | None:
    if version_id is None:
        return None
    if catalog_versions.version_row(con, version_id) is None:  # removed since (`dlv rm`); the history outlives it
        return f"{version_id[:12]} (removed)"
    return version_info(con, version_id).ref


def split_tag(text: str) -> tuple[str, str]:
    """'NAME:TAG' -> (NAME, TAG), both checked."""
    model, colon, tag = text.partition(":")
    if not colon:
        raise InputError(f"{text!r} is not a tag; write it as NAME:TAG, e.g. resnet:production")
    return check_model_name(model), check_tag_name(tag)


def set_tag(con: duckdb.DuckDBPyConnection, ref: str, tag: str, author: str | None = None) -> TagChange:
    check_tag_name(tag)
    vid = resolve(con, ref)
    info = version_info(con, vid)
    previous = catalog_tags.set_tag(con, info.model, tag, vid, author or default_author(), _now())
    return TagChange(info.model, tag, _ref_of(con, previous), info.ref)


def delete_tag(con: duckdb.DuckDBPyConnection, name: str, author: str | None = None) -> TagChange:
    model, tag = split_tag(name)
    if not catalog_versions.model_exists(con, model):
        resolve(con, model)  # the unknown-name error with close matches
    previous = catalog_tags.delete_tag(con, model, tag, author or default_author(), _now())
    if previous is None:
        known = ", ".join(f"{t.model}:{t.tag}" for t in catalog_tags.tags(con, model)[:10]) or "none"
        raise RefError(f"there is no tag {name!r} (tags of {model}: {known}); `dlv tag --list` shows every tag")
    return TagChange(model, tag, _ref_of(con, previous), None)


def list_tags(con: duckdb.DuckDBPyConnection, model: str | None = None) -> list[TagInfo]:
    if model is not None and not catalog_versions.model_exists(con, model):
        resolve(con, model)  # the unknown-name error with close matches
    return [TagInfo(t.model, t.tag, t.version_id, version_info(con, t.version_id).ref)
            for t in catalog_tags.tags(con, model)]


def tag_history(con: duckdb.DuckDBPyConnection, model: str | None = None, tag: str | None = None) -> list[TagMoveInfo]:
    return [TagMoveInfo(m.model, m.tag, _ref_of(con, m.version_id), m.author, m.moved_at)
            for m in catalog_tags.history(con, model, tag)]
