"""The names a query may mention: models, layer names and operations, hyperparameter keys,
metric names and saved queries. A query is checked against them before it runs (a typo is
an error with close matches, not an empty result), and the REPL completes them."""
from __future__ import annotations

from dataclasses import dataclass

import duckdb

from .saved_queries import saved_queries
from .selection_terms import OPERATION_KINDS


@dataclass(frozen=True)
class CatalogNames:
    has_versions: bool
    models: frozenset[str]
    layer_names: frozenset[str]     # names of operation nodes of any stored graph
    ops: frozenset[str]             # their operations ('Conv2d', 'relu', ...)
    hparam_keys: frozenset[str]
    metric_names: frozenset[str]
    saved: dict[str, str]           # saved query name -> text


def catalog_names(con: duckdb.DuckDBPyConnection) -> CatalogNames:
    def column(sql: str, params: list | None = None) -> frozenset[str]:
        return frozenset(r[0] for r in con.execute(sql, params or []).fetchall())
    kinds = list(OPERATION_KINDS)
    return CatalogNames(
        has_versions=con.execute("SELECT count(*) > 0 FROM versions").fetchone()[0],
        models=column("SELECT name FROM models"),
        layer_names=column("SELECT DISTINCT name FROM graph_nodes WHERE list_contains(?, kind)", [kinds]),
        ops=column("SELECT DISTINCT op FROM graph_nodes WHERE list_contains(?, kind)", [kinds]),
        hparam_keys=column("SELECT DISTINCT key FROM hparams"),
        metric_names=column("SELECT DISTINCT name FROM metrics"),
        saved=saved_queries(con),
    )
