"""Version references: full or unique-prefix id, NAME (latest) or NAME@N (N-th, from 1)."""
from __future__ import annotations

import difflib
import re

import duckdb

from ..catalog import versions as catalog_versions
from ..errors import InputError, RefError

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")
_HEX = re.compile(r"^[0-9a-f]{4,64}$")

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


def resolve(con: duckdb.DuckDBPyConnection, ref: str) -> str:
    """Return the full version id ``ref`` names, or raise RefError listing candidates."""
    ref = (ref or "").strip()
    if not ref:
        raise RefError("empty version reference; give an id prefix, NAME or NAME@N")
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
        raise RefError(_unknown(con, name))
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
    raise RefError(_unknown(con, ref))


def _unknown(con: duckdb.DuckDBPyConnection, ref: str) -> str:
    names = catalog_versions.model_names(con)
    close = difflib.get_close_matches(ref, names, n=3, cutoff=0.5)
    if close:
        return f"unknown version reference {ref!r}; did you mean {', '.join(close)}? (`dlv list` shows all models)"
    if names:
        return f"unknown version reference {ref!r}; `dlv list` shows the models and `dlv log NAME` their versions"
    return f"unknown version reference {ref!r}: the repository has no versions yet; commit one with `dlv commit`"
