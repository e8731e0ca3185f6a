"""Version references: full or unique-prefix id, NAME (latest), NAME@N (N-th, from 1) or NAME:TAG (a tag).

Every command that takes a version resolves it here, so each form works everywhere.
"""
from __future__ import annotations

import difflib
import re

import duckdb

from ..catalog import tags as catalog_tags
from ..catalog import versions as catalog_versions
from ..errors import InputError, RefError

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")
_HEX = re.compile(r"^[0-9a-f]{4,64}$")
TAG_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")

#: where a "did you mean" error points for the list of models (the remote's listing when resolving there)
LOCAL_LISTING = "`dlv list` shows all models"


def check_tag_name(tag: str) -> str:
    if not isinstance(tag, str) or not TAG_RE.match(tag) or tag.isdigit():
        raise InputError(
            f"invalid tag {tag!r}: use a letter or '_' first, then letters, digits, '_', '.' or '-' "
            "(at most 64 characters, no ':', '@' or spaces), e.g. production")
    return tag

#: default for a commit's ``parent``: the latest version of the committed model, if any (as a
#: git commit's parent is the branch head). Pass ``parent=()`` to start a new lineage.
LATEST = "<latest>"


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InputError(
            f"invalid model name {name!r}: use a letter or '_' first, then letters, digits, '_', '.' or '-' "
            "(at most 128 characters, no '@' or spaces)"
        )
    return name


def resolve(con: duckdb.DuckDBPyConnection, ref: str, *, listing: str = LOCAL_LISTING) -> str:
    """Return the full version id ``ref`` names, or raise RefError listing candidates.

    ``listing`` says where the models can be listed (the hint of an unknown name).
    """
    ref = (ref or "").strip()
    if not ref:
        raise RefError("empty version reference; give an id prefix, NAME, NAME@N or NAME:TAG")
    if ":" in ref:
        return _resolve_tag(con, ref, listing)
    name, at, seq_text = ref.partition("@")
    if at:
        if not seq_text.isdigit() or int(seq_text) < 1:
            raise RefError(f"bad reference {ref!r}: the part after '@' must be a version number from 1, e.g. {name}@1")
        vid = catalog_versions.id_at(con, name, int(seq_text))
        if vid is not None:
            return vid
        seqs = catalog_versions.seqs_of(con, name)
        if seqs:
            # Pulled versions keep their numbers, so the numbers can have gaps.
            shown = f"{name}@{seqs[0]}..{name}@{seqs[-1]}" if seqs == list(range(seqs[0], seqs[-1] + 1)) else \
                ", ".join(f"{name}@{s}" for s in seqs[:8]) + (" ..." if len(seqs) > 8 else "")
            raise RefError(f"model {name!r} has {len(seqs)} version(s); {ref!r} does not exist (use {shown})")
        raise RefError(_unknown(con, name, listing))
    vid = catalog_versions.latest_id(con, ref)
    if vid is not None:
        return vid
    if _HEX.match(ref):
        matches = catalog_versions.ids_with_prefix(con, ref, limit=11)
        if len(matches) == 1:
            return matches[0].id
        if len(matches) > 1:
            shown = ", ".join(f"{m.id[:12]} ({m.ref})" for m in matches[:10])
            raise RefError(f"reference {ref!r} is ambiguous: it matches {shown}; use a longer id prefix")
    raise RefError(_unknown(con, ref, listing))


def _resolve_tag(con: duckdb.DuckDBPyConnection, ref: str, listing: str) -> str:
    name, _, tag = ref.partition(":")
    vid = catalog_tags.target(con, name, tag)
    if vid is not None:
        return vid
    if not catalog_versions.model_exists(con, name):
        raise RefError(_unknown(con, name, listing))
    known = [t.tag for t in catalog_tags.tags(con, name)]
    if not known:
        raise RefError(f"model {name!r} has no tags, so {ref!r} names nothing; "
                       f"tag a version with `dlv tag {name}@N {tag or 'TAG'}`")
    close = difflib.get_close_matches(tag, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(f'{name}:{c}' for c in close)}?" if close else \
        f"its tags: {', '.join(f'{name}:{t}' for t in known[:10])}"
    raise RefError(f"model {name!r} has no tag {tag!r}; {hint} (`dlv tag --list` shows every tag)")


def _unknown(con: duckdb.DuckDBPyConnection, ref: str, listing: str = LOCAL_LISTING) -> str:
    names = catalog_versions.model_names(con)
    close = difflib.get_close_matches(ref, names, n=3, cutoff=0.5)
    if close:
        return f"unknown version reference {ref!r}; did you mean {', '.join(close)}? ({listing})"
    if names:
        return f"unknown version reference {ref!r}; {listing}"
    return f"unknown version reference {ref!r}: the repository has no versions yet; commit one with `dlv commit`"
