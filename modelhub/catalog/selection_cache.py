"""Relations derived from one state of the catalog, computed once per process and joined by row id.

A metric's value per version (the latest, max or min of its series) aggregates every point of
`metrics`, and a structural graph predicate joins `graph_nodes` with `graph_edges`: at 100,000
versions each costs hundreds of milliseconds, and both depend only on the catalog's state, which
its generation token names (:mod:`.generation`). So each is computed once per state, kept here
as numpy columns, and registered on the scope's cursor as a relation the statement's SQL joins
(:mod:`.selection_sql`); a statement with another threshold reuses it.

A relation is kept from the second statement that needs it on: the first computes it inline,
as the SQL without this module would, so a one-off statement (a cold ``dlv query``) pays nothing
extra (neither the row-id join nor numpy's import).

The relations hold ``versions.rowid``, not version ids: an integer join costs a fraction of a
string join, and row ids only move when the file's rows are rewritten, which gives the catalog a
new token (a write scope; a salvage in :mod:`.maintenance` gives one too).
"""
from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from typing import Any

import duckdb

from . import selection_terms as T

#: (generation, what) -> {column: numpy array}; a few states' worth (1.6 MB per metric at 100,000 versions)
_COLUMNS: "OrderedDict[tuple, dict[str, Any]]" = OrderedDict()
_MAX_RELATIONS = 32
#: (generation, what) asked for once: kept when asked for again
_ASKED: "OrderedDict[tuple, None]" = OrderedDict()
_names = itertools.count()
_lock = threading.Lock()    # the web UI serves queries from several threads


class DerivedRelations:
    """The derived relations one statement may join, for the catalog state ``generation`` that
    ``con``'s transaction reads. Only valid in a statement's own read snapshot: inside a
    writer's transaction the token names the state before that transaction's writes."""

    def __init__(self, con: duckdb.DuckDBPyConnection, generation: str) -> None:
        self.con, self.generation = con, generation
        self._registered: dict[tuple, str] = {}

    def metric(self, name: str, aggregate: T.Aggregate, sql: str, params: dict) -> str | None:
        """A relation (rid, val): each version's ``aggregate`` of metric ``name`` (``sql`` computes
        it); None the first time it is asked for in this state (compute it inline)."""
        return self._relation(("metric", name, str(aggregate)), sql, params)

    def structure(self, term: T.GraphStructureTerm, sql: str, params: dict) -> str | None:
        """A relation (rid): the versions whose graph satisfies ``term`` (``sql`` computes it);
        None the first time it is asked for in this state (compute it inline)."""
        return self._relation(("structure", term), sql, params)

    def _relation(self, what: tuple, sql: str, params: dict) -> str | None:
        if what in self._registered:
            return self._registered[what]
        key = (self.generation, what)
        with _lock:
            columns = _COLUMNS.get(key)
            if columns is None and key not in _ASKED:
                _ASKED[key] = None
                if len(_ASKED) > 4 * _MAX_RELATIONS:
                    _ASKED.popitem(last=False)
                return None
            if columns is not None:
                _COLUMNS.move_to_end(key)
        if columns is None:
            columns = self.con.execute(sql, params).fetchnumpy()
            with _lock:
                _COLUMNS[key] = columns
                if len(_COLUMNS) > _MAX_RELATIONS:
                    _COLUMNS.popitem(last=False)
        name = f"dlv_derived_{next(_names)}"
        self.con.register(name, columns)      # this cursor only; gone when the scope closes it
        self._registered[what] = name
        return name


def clear_derived_relations() -> None:
    with _lock:
        _COLUMNS.clear()
        _ASKED.clear()
