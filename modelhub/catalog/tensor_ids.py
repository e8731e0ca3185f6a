"""Which hash makes a repository's new tensor ids (``meta('tensor_hash')``, schema version 4).

New catalogs make BLAKE3 ids; a catalog upgraded from an older schema keeps BLAKE2b-256, so a
tensor it stored before is found again by its id (docs/INTERNALS.md, "Names and ids").
"""
from __future__ import annotations

import duckdb

from ..storage.objects import HASH_NAME as NEW_TENSOR_HASH
from ..storage.objects import LEGACY_HASH_NAME as LEGACY_TENSOR_HASH
from ..storage.objects import NAME_LENGTHS

_KEY = "tensor_hash"


def tensor_hash_name(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute("SELECT value FROM meta WHERE key = ?", [_KEY]).fetchone()
    return row[0] if row else NEW_TENSOR_HASH


def set_tensor_hash_name(con: duckdb.DuckDBPyConnection, name: str) -> None:
    con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [_KEY, name])


def follow_pulled_ids(con: duckdb.DuckDBPyConnection) -> None:
    """After a clone: make new ids the way the pulled tensors were made, when they all were BLAKE2b
    (a clone of a remote written before BLAKE3), so that a fine-tune committed in the clone still
    finds the base's tensors it did not change."""
    total, legacy = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE length(tensor_hash) = ?) FROM tensor_data",
        [NAME_LENGTHS[LEGACY_TENSOR_HASH]]).fetchone()
    if total and total == legacy:
        set_tensor_hash_name(con, LEGACY_TENSOR_HASH)
