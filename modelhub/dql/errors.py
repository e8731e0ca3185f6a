"""DQL error types. Every message says what went wrong and how to fix it."""
from __future__ import annotations

import difflib
from typing import Iterable

from ..errors import QueryError


class DQLSyntaxError(QueryError):
    """The text is not DQL: carries line/column and a caret picture of the spot."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


class BindError(QueryError):
    """A name, layer pattern, hyperparameter or metric does not exist or is misused.

    ``unknown_name`` is true when the catalog does not know a name (yet): a commit that lands
    while the query binds may bring it, so the executor checks once more on a fresh snapshot.
    (A flag, not a subclass: the error's type is what users and golden files see.)"""

    def __init__(self, message: str, *, unknown_name: bool = False) -> None:
        super().__init__(message)
        self.unknown_name = unknown_name


class PlanError(QueryError):
    """The query is well formed but cannot be turned into a plan (e.g. no default grid)."""


class ExecutionError(QueryError):
    """Running the plan failed (graph surgery impossible, engine unavailable, ...)."""


def close_matches(word: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    return difflib.get_close_matches(word, sorted(set(candidates)), n=n, cutoff=cutoff)


def suggestion(word: str, candidates: Iterable[str], what: str) -> str:
    """The tail of a one-line error: close matches, else a few known names."""
    cands = sorted(set(candidates))
    near = close_matches(word, cands)
    if near:
        return "did you mean " + ", ".join(f'"{c}"' for c in near) + "?"
    if not cands:
        return f"the catalog has no {what} yet"
    shown = ", ".join(f'"{c}"' for c in cands[:8])
    more = f" (and {len(cands) - 8} more)" if len(cands) > 8 else ""
    return f"known {what}: {shown}{more}"
