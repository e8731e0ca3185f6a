"""Selecting versions: run a :class:`~.selection_terms.Selection` and read what a query
needs about the versions it selected (their graphs, their origin hyperparameter).

Also the read snapshot a query runs in: the names it is checked against and the rows
it returns must come from one state of the catalog, even while other processes commit.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import duckdb

from . import selection_terms as T
from .selection_cache import DerivedRelations
from .selection_sql import graph_prefilter_sql, ids_sql, rows_sql


# ---- the snapshot a query reads ---------------------------------------------------------
@contextmanager
def read_snapshot(con: duckdb.DuckDBPyConnection) -> Iterator[bool]:
    """One transaction around a statement's reads: what it is bound against and the rows it
    returns come from one snapshot of the catalog (inside a write scope, whose transaction is
    already open, that transaction is the snapshot). Yields whether the transaction is the
    statement's own (only then can :func:`renew_snapshot` move it forward)."""
    if getattr(con, "in_write_transaction", False):
        yield False     # a failed BEGIN would abort the writer's transaction: do not try one
        return
    try:
        con.execute("BEGIN TRANSACTION")
    except duckdb.TransactionException:
        yield False     # already inside the enclosing writer's transaction
        return
    try:
        yield True
    finally:
        try:
            con.execute("ROLLBACK")     # it only read
        except duckdb.Error:
            pass


def renew_snapshot(con: duckdb.DuckDBPyConnection) -> None:
    """Move a statement's own snapshot (see :func:`read_snapshot`) to the newest commit."""
    con.execute("ROLLBACK")
    con.execute("BEGIN TRANSACTION")


# ---- running a selection ----------------------------------------------------------------
def select_rows(con: duckdb.DuckDBPyConnection, selection: T.Selection,
                derived: DerivedRelations | None = None) -> list[tuple]:
    """The selection's rows, one value per column; hyperparameters decoded from their JSON.
    ``derived``: relations kept for the catalog state ``con`` reads (selection_cache.py)."""
    q = rows_sql(selection, derived)
    decode = [isinstance(c, T.HParamValue) or isinstance(c, T.RelatedTerm) and isinstance(c.value, T.HParamValue)
              for c in selection.columns]
    rows = con.execute(q.sql, q.params).fetchall()
    if not any(decode):
        return rows
    return [tuple(json.loads(v) if d and v is not None else v for v, d in zip(r, decode)) for r in rows]


def select_ids(con: duckdb.DuckDBPyConnection, selection: T.Selection,
               derived: DerivedRelations | None = None) -> list[str]:
    """The ids of the selected versions, in the selection's order."""
    q = ids_sql(selection, derived)
    return [r[0] for r in con.execute(q.sql, q.params).fetchall()]


def candidate_graph_hashes(con: duckdb.DuckDBPyConnection, selection: T.Selection,
                           derived: DerivedRelations | None = None) -> list[str]:
    """Graphs of the versions that pass the graph-free conjuncts of the selection: the only
    graphs a structural predicate of it needs to be evaluated over."""
    q = graph_prefilter_sql(selection, derived)
    return [r[0] for r in con.execute(q.sql, q.params).fetchall()]


# ---- what a query reads about the selected versions -------------------------------------
@dataclass(frozen=True)
class VersionGraph:
    """A version and its stored graph definition (JSON; None for a state-dict-only version)."""
    version_id: str
    model: str
    seq: int
    definition: str | None


def version_graphs(con: duckdb.DuckDBPyConnection, version_ids: list[str]) -> list[VersionGraph]:
    """The versions ``version_ids`` names with their graph definitions, by model and seq."""
    rows = con.execute(
        "SELECT v.id, v.model, v.seq, g.definition FROM versions v LEFT JOIN graphs g ON g.graph_hash = v.graph_hash "
        "WHERE v.id IN (SELECT unnest($ids)) ORDER BY v.model, v.seq", {"ids": version_ids}).fetchall()
    return [VersionGraph(*r) for r in rows]


@dataclass(frozen=True)
class VersionHParam:
    """A version and the value of one hyperparameter (decoded; None where it has none)."""
    version_id: str
    model: str
    seq: int
    value: Any


def version_hparam(con: duckdb.DuckDBPyConnection, version_ids: list[str], key: str) -> list[VersionHParam]:
    """The versions ``version_ids`` names with their hyperparameter ``key``, by model and seq."""
    rows = con.execute(
        "SELECT v.id, v.model, v.seq, h.value_json FROM versions v "
        "LEFT JOIN hparams h ON h.version_id = v.id AND h.key = $key "
        "WHERE v.id IN (SELECT unnest($ids)) ORDER BY v.model, v.seq",
        {"ids": version_ids, "key": key}).fetchall()
    return [VersionHParam(vid, model, seq, None if raw is None else json.loads(raw))
            for vid, model, seq, raw in rows]


def derived_versions(con: duckdb.DuckDBPyConnection,
                     pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """For each (parent version id, graph hash): the newest version with that first parent and
    that graph (what committing a slice/construct network of that parent made), if any."""
    if not pairs:
        return {}
    rows = con.execute(
        "SELECT p.parent_id, v.graph_hash, arg_max(v.id, v.created_at) FROM versions v "
        "JOIN version_parents p ON p.version_id = v.id AND p.ord = 0 "
        "WHERE p.parent_id IN (SELECT unnest($parents)) AND v.graph_hash IN (SELECT unnest($hashes)) "
        "GROUP BY p.parent_id, v.graph_hash",
        {"parents": sorted({a for a, _ in pairs}), "hashes": sorted({b for _, b in pairs})}).fetchall()
    found = {(par, h): vid for par, h, vid in rows}
    return {pair: found[pair] for pair in pairs if pair in found}
