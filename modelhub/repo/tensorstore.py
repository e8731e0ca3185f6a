"""Tensors <-> the object store and the catalog's ``tensor_data`` table.

This is the only place the repository calls the storage codecs, so the
parameter archive can change encodings without touching commit/checkout.
Storage errors arrive translated (``modelhub/storage_boundary.py``).
"""
from __future__ import annotations

import json

import duckdb

from ..errors import IntegrityError, ModelhubError
from ..storage import tensors as codec
from ..storage_boundary import BlobStore, MissingObjectError, corrupt_object, decode_tensor, encode_tensor


def put_blob(con: duckdb.DuckDBPyConnection, store: BlobStore, data: bytes) -> str:
    """Write a blob (durable first) and list it in the caller's transaction; returns its hash."""
    blob_hash = store.put(data)  # fsynced and renamed before any catalog row references it
    con.execute("INSERT OR IGNORE INTO objects VALUES (?, ?)", [blob_hash, len(data)])
    return blob_hash


def store_tensors(con: duckdb.DuckDBPyConnection, store: BlobStore,
                  tensors: list[tuple[bytes, str, list[int]]]) -> list[str]:
    """Store several tensors once each; returns their hashes. One catalog query finds those
    already stored (a fine-tune's frozen tensors, an epoch snapshot's unchanged ones) and one
    statement per table lists the new ones: single-row inserts cost ~2 ms each in DuckDB, which
    was most of an evaluate commit."""
    hashes = [codec.tensor_hash(raw, dtype, shape) for raw, dtype, shape in tensors]
    known = {r[0] for r in con.execute("SELECT tensor_hash FROM tensor_data WHERE tensor_hash IN (SELECT unnest(?))",
                                       [list(dict.fromkeys(hashes))]).fetchall()}
    blobs: dict[str, int] = {}
    rows: list[list] = []
    for th, (raw, dtype, shape) in zip(hashes, tensors):
        if th in known:
            continue
        encoded = encode_tensor(raw, dtype, shape, config=codec.commit_config())
        for blob in encoded.blobs:
            blobs[store.put(blob)] = len(blob)   # fsynced and renamed before the rows below name it
        rows.append([th, dtype, json.dumps(list(shape)), len(raw), json.dumps(encoded.manifest, sort_keys=True)])
        known.add(th)
    if blobs:
        con.execute("INSERT OR IGNORE INTO objects SELECT unnest(?), unnest(?)", [list(blobs), list(blobs.values())])
    if rows:
        con.execute("INSERT INTO tensor_data SELECT unnest(?), unnest(?), unnest(?), unnest(?), unnest(?)",
                    [list(col) for col in zip(*rows)])
    return hashes


def load_tensor(con: duckdb.DuckDBPyConnection, store: BlobStore, tensor_hash: str) -> tuple[bytes, str, list[int]]:
    return load_tensors(con, store, [tensor_hash])[tensor_hash]


def load_tensors(
    con: duckdb.DuckDBPyConnection, store: BlobStore, tensor_hashes: list[str]
) -> dict[str, tuple[bytes, str, list[int]]]:
    """Decode several tensors; their catalog rows are read in one query (a checkout's hot path)."""
    rows = {
        r[0]: r[1:] for r in con.execute(
            "SELECT tensor_hash, dtype, shape, nbytes, encoding FROM tensor_data WHERE tensor_hash IN (SELECT unnest(?))",
            [list(dict.fromkeys(tensor_hashes))],
        ).fetchall()
    }
    out: dict[str, tuple[bytes, str, list[int]]] = {}
    for tensor_hash in tensor_hashes:
        if tensor_hash in out:
            continue
        row = rows.get(tensor_hash)
        if row is None:
            raise IntegrityError(
                f"tensor {tensor_hash[:16]} is referenced but not in the catalog; run `dlv fsck`"
            )
        try:
            dtype, shape, nbytes, encoding = row[0], json.loads(row[1]), int(row[2]), json.loads(row[3])
            raw = _decode_verified(con, store, tensor_hash, dtype, shape, nbytes, encoding)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # A malformed catalog row (hand-edited or damaged): name it instead of crashing.
            raise IntegrityError(
                f"tensor {tensor_hash[:16]} has a malformed catalog entry ({type(exc).__name__}); "
                "run `dlv fsck --deep` and restore the affected versions from a remote"
            ) from None
        out[tensor_hash] = (raw, dtype, shape)
    return out


def _decode_verified(con, store: BlobStore, tensor_hash: str, dtype: str, shape, nbytes: int, encoding) -> bytes:
    """Decode a tensor and check the result against its content hash.

    The content hash covers the exact output bytes, so verifying each blob
    as well would hash everything twice. Blobs are read unverified first;
    only when the result is wrong (or decoding fails) is the tensor decoded
    again with verified reads, which names the corrupt blob.
    """
    # archive deltas name their base tensor by hash; the storage plan is a
    # tree, so resolving bases recursively always ends at a whole tensor
    failed_bases: list[str] = []

    def base(h: str) -> bytes:
        try:
            return load_tensor(con, store, h)[0]
        except ModelhubError:
            failed_bases.append(h)  # the base's own error is final: raised as it is, not retried
            raise

    try:
        raw = decode_tensor(encoding, lambda b: store.get(b, verify=False), nbytes, base=base)
        if codec.tensor_hash(raw, dtype, shape) == tensor_hash:
            return raw
    except MissingObjectError:
        raise
    except Exception:  # noqa: BLE001 - damaged bytes can fail anywhere in a codec; the verified pass names them
        if failed_bases:
            raise
    raw = decode_tensor(encoding, store.get, nbytes, base=base)
    if codec.tensor_hash(raw, dtype, shape) != tensor_hash:
        raise corrupt_object(tensor_hash, "decoded tensor does not match its hash")
    return raw
