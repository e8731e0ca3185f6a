"""What the catalog knows: the names a query may mention (for binding and completion)."""
from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from .patterns import OPERATION_KINDS


@dataclass(frozen=True)
class Vocabulary:
    has_versions: bool
    models: frozenset[str] = frozenset()
    layer_names: frozenset[str] = frozenset()
    ops: frozenset[str] = frozenset()
    hparam_keys: frozenset[str] = frozenset()
    metric_names: frozenset[str] = frozenset()
    saved: dict = field(default_factory=dict)      # saved query name -> text

    @staticmethod
    def load(con: duckdb.DuckDBPyConnection) -> "Vocabulary":
        def col(sql: str, params: list | None = None) -> frozenset[str]:
            return frozenset(r[0] for r in con.execute(sql, params or []).fetchall())
        kinds = list(OPERATION_KINDS)
        return Vocabulary(
            has_versions=con.execute("SELECT count(*) > 0 FROM versions").fetchone()[0],
            models=col("SELECT name FROM models"),
            layer_names=col("SELECT DISTINCT name FROM graph_nodes WHERE list_contains(?, kind)", [kinds]),
            ops=col("SELECT DISTINCT op FROM graph_nodes WHERE list_contains(?, kind)", [kinds]),
            hparam_keys=col("SELECT DISTINCT key FROM hparams"),
            metric_names=col("SELECT DISTINCT name FROM metrics"),
            saved=dict(con.execute("SELECT name, text FROM saved_queries").fetchall()),
        )

    @staticmethod
    def empty() -> "Vocabulary":
        return Vocabulary(has_versions=False)
