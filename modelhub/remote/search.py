"""`dlv search REMOTE "DQL"`: run a select query on a remote's catalog, no weights moved.

The remote's segments are loaded into a temporary catalog with the local
schema (:class:`.view.RemoteView`) and the statement runs through the DQL
executor unchanged, so results match what `dlv query` would return after
pulling. Only ``select`` (and ``explain``) statements are accepted: the
others need weights or write to the catalog.
"""
from __future__ import annotations

from ..dql import execute
from ..dql.result import QueryResult
from ..errors import InputError
from .progress import NULL_PROGRESS, Progress
from .transport import RemoteStore
from .view import RemoteView, read_index

_READ_ONLY = ("select", "explain")


def search(remote: RemoteStore, text: str, *, progress: Progress = NULL_PROGRESS) -> QueryResult:
    words = (text or "").split(None, 2)
    first = words[0].lower() if words else ""
    second = words[1].lower() if len(words) > 1 else ""
    if first not in _READ_ONLY or (first == "explain" and second not in ("select",)):
        raise InputError(
            f"dlv search runs select queries only, not {first or 'an empty statement'!r}; "
            "pull the version first (`dlv pull REMOTE REF`) and use `dlv query` for slice, construct and evaluate")
    index = read_index(remote, progress)
    with RemoteView(index) as view:
        return execute(text, view.catalog)
