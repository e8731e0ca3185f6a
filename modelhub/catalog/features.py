"""The catalog's index of materialized features (table ``materializations``).

The engine writes frozen-prefix outputs as chunk files into a feature store
(``.dlv/features`` or an fsspec location); every chunk it writes is also
listed here, so the catalog knows which prefix outputs exist for which
dataset records without walking the store. The engine reaches these
functions only through the repository's adapter
(``modelhub/repo/engine_access.py``); `dlv gc --features` empties the table
together with the store (:func:`forget_all`).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb


@dataclass(frozen=True)
class Materialization:
    """One stored chunk of one prefix's outputs: records [start_record, end_record) of a dataset."""
    prefix_hash: str         # the engine's content hash of the frozen prefix (its feature-store key)
    dataset_uid: str
    dtype: str               # float32, or float16 when asked
    start_record: int
    end_record: int
    path: str                # relative to .dlv/features, or the full URL of a remote store's chunk
    nbytes: int
    checksum: str            # blake2b-256 of the chunk file
    created_at: datetime     # UTC, without a time zone (as every catalog timestamp)


def record_materialization(con: duckdb.DuckDBPyConnection, chunk: Materialization) -> None:
    """List a written chunk; a chunk written again (same prefix, dataset, dtype and first record)
    replaces its row, since a rewrite of a record range has the same name and bytes."""
    con.execute(
        "INSERT OR REPLACE INTO materializations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [chunk.prefix_hash, chunk.dataset_uid, chunk.dtype, chunk.start_record, chunk.end_record,
         chunk.path, chunk.nbytes, chunk.checksum, chunk.created_at],
    )


def forget_all(con: duckdb.DuckDBPyConnection) -> None:
    """Forget every materialized feature chunk (`dlv gc --features` deletes their files)."""
    con.execute("DELETE FROM materializations")
