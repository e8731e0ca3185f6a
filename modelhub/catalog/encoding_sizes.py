"""Sizes `dlv archive` measured by encoding (table encoding_sizes), so that an archive measures
only the tensors and candidate deltas that are new since the last one.

A key is (base or None, tensor): None for the tensor stored whole. A value of None records that
no delta against that base beats storing the tensor whole (no edge in the storage graph). Rows
are per encoder id; recording sizes under one id drops the rows of every other, so the table
holds one encoder's measurements and never grows across upgrades.
"""
from __future__ import annotations

from typing import Optional

import duckdb

from .bulk import insert_or_ignore_rows

SizeKey = tuple[Optional[str], str]


#: rows no archive writes (a damaged or hand-edited catalog): a negative size, or no size for a
#: tensor stored whole. They are not used, so the archive measures those encodings again.
_INVALID = "bytes < 0 OR (base = '' AND bytes IS NULL)"


def measured_sizes(con: duckdb.DuckDBPyConnection, encoder: str) -> dict[SizeKey, Optional[int]]:
    rows = con.execute(f"SELECT base, tensor, bytes FROM encoding_sizes WHERE encoder = ? AND NOT ({_INVALID})",
                       [encoder]).fetchall()
    return {(base or None, tensor): (None if size is None else int(size)) for base, tensor, size in rows}


def record_sizes(con: duckdb.DuckDBPyConnection, encoder: str, sizes: dict[SizeKey, Optional[int]]) -> None:
    """Add ``sizes`` measured by ``encoder``; forget what any other encoder measured, and what was
    measured of tensors the catalog no longer holds (a dry run records after its read scope, so
    a gc may have run in between)."""
    con.execute(f"DELETE FROM encoding_sizes WHERE encoder <> ? OR {_INVALID}", [encoder])
    insert_or_ignore_rows(con, "encoding_sizes",
                          [[tensor, base or "", encoder, size] for (base, tensor), size in sizes.items()])
    con.execute("DELETE FROM encoding_sizes WHERE tensor NOT IN (SELECT tensor_hash FROM tensor_data) "
                "OR (base <> '' AND base NOT IN (SELECT tensor_hash FROM tensor_data))")


def forget_sizes(con: duckdb.DuckDBPyConnection, tensor_hashes: list[str]) -> None:
    """Drop what was measured of, or against, tensors the catalog no longer holds (gc)."""
    if tensor_hashes:
        con.execute("DELETE FROM encoding_sizes WHERE tensor IN (SELECT unnest(?)) "
                    "OR base IN (SELECT unnest(?))", [tensor_hashes, tensor_hashes])


def clear_sizes(con: duckdb.DuckDBPyConnection) -> None:
    """Forget every measurement (`dlv archive --remeasure`)."""
    con.execute("DELETE FROM encoding_sizes")
