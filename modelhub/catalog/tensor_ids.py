"""Which hash makes a repository's new tensor ids (``meta('tensor_hash')``, schema version 4).

New catalogs make BLAKE3 ids; a catalog upgraded from an older schema keeps BLAKE2b-256, so a
tensor it stored before is found again by its id (docs/INTERNALS.md, "Names and ids"). The
names are those of storage.objects: ``blake3-320`` and ``blake2b-256``.
"""
from __future__ import annotations

import duckdb

NEW_TENSOR_HASH = "blake3-320"
LEGACY_TENSOR_HASH = "blake2b-256"
_KEY = "tensor_hash"


def tensor_hash_name(con: duckdb.DuckDBPyConnection) -> str:
    row = con.execute("SELECT value FROM meta WHERE key = ?", [_KEY]).fetchone()
    return row[0] if row else NEW_TENSOR_HASH


def set_tensor_hash_name(con: duckdb.DuckDBPyConnection, name: str) -> None:
    con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [_KEY, name])


def follow_pulled_ids(con: duckdb.DuckDBPyConnection) -> str:
    """After a clone: make new ids the way the pulled tensors were made, when they all were BLAKE2b
    (a clone of a remote written before BLAKE3), so that a fine-tune committed in the clone still
    finds the base's tensors it did not change. Returns the hash in force."""
    total, legacy = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE length(tensor_hash) = 64) FROM tensor_data").fetchone()
    if total and total == legacy:
        set_tensor_hash_name(con, LEGACY_TENSOR_HASH)
    return tensor_hash_name(con)
