"""Tensors <-> the object store and the catalog's tensor tables (``tensor_data``,
``snapshot_tensors``).

This is the only place the repository calls the storage codecs or the
catalog's tensor queries (:mod:`modelhub.catalog.tensors`), so the parameter
archive can change encodings without touching commit, checkout, gc or fsck.
Storage errors arrive translated (``modelhub/storage_boundary.py``).
"""
from __future__ import annotations

import json
import os
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import duckdb

from ..catalog import encoding_sizes
from ..catalog import objects as catalog_objects
from ..catalog import tensors as catalog_tensors
from ..catalog.tensor_ids import tensor_hash_name
from ..catalog.tensors import SnapshotTensor, TensorRow, TensorUse
from ..errors import IntegrityError, ModelhubError
from ..progress import NULL_PROGRESS, Progress
from ..storage_boundary import (BlobStore, MissingObjectError, PendingBlobs, corrupt_object, decode_tensor,
                                encode_tensor)


def _codec():
    """storage.tensors, imported on first use: it brings numpy and zstandard, which reading
    the catalog (`dlv log`) must not pay for."""
    from ..storage import tensors
    return tensors


def put_blob(con: duckdb.DuckDBPyConnection, store: BlobStore, data: bytes) -> str:
    """Write a blob (durable first) and list it in the caller's transaction; returns its hash."""
    blob_hash = store.put(data)  # fsynced and renamed before any catalog row references it
    catalog_objects.add_blob(con, blob_hash, len(data))
    return blob_hash


def store_tensors(con: duckdb.DuckDBPyConnection, store: BlobStore,
                  tensors: list[tuple[bytes, str, list[int]]]) -> list[str]:
    """Store several tensors once each; returns their hashes. One catalog query finds those
    already stored (a fine-tune's frozen tensors, an epoch snapshot's unchanged ones) and one
    statement per table lists the new ones: single-row inserts cost ~2 ms each in DuckDB, which
    was most of an evaluate commit."""
    hash_name = tensor_hash_name(con)
    hashes = [_codec().tensor_hash(raw, dtype, shape, hash_name=hash_name) for raw, dtype, shape in tensors]
    known = catalog_tensors.known_hashes(con, hashes)
    blobs: dict[str, int] = {}
    rows: list[TensorRow] = []
    with PendingBlobs() as pending, _scratch_pool() as pool:   # a failure before the sync removes its temp files
        for th, (raw, dtype, shape) in zip(hashes, tensors):
            if th in known:
                continue
            manifest, sizes = _encode_and_put(store, pending, pool, raw, dtype, shape)
            blobs.update(sizes)
            rows.append(TensorRow(th, dtype, json.dumps(list(shape)), len(raw), manifest))
            known.add(th)
        store.sync(pending)   # every blob fsynced (in one batch) before the rows below name it
    catalog_objects.add_blobs(con, blobs)
    catalog_tensors.insert_tensors(con, rows)
    return hashes


@contextmanager
def _scratch_pool():
    """The buffers a commit's encodes reuse for their temporaries (storage/scratch.py), unmapped at the end."""
    from ..storage.directio import BufferPool
    from ..storage.scratch import SCRATCH_KEEP_BYTES

    pool = BufferPool(SCRATCH_KEEP_BYTES)
    try:
        yield pool
    finally:
        pool.close()


def _encode_and_put(store: BlobStore, pending: PendingBlobs, pool, raw, dtype: str,
                    shape: Sequence[int]) -> tuple[str, dict[str, int]]:
    """Encode a new tensor with its temporaries in ``pool``'s buffers and put its blobs (views of
    them, some) with ``pending``; returns (its manifest as JSON, {blob: size}). The buffers go
    back to the pool once the blobs are written: nothing here keeps a view of them."""
    from ..storage.scratch import SCRATCH_MIN_BYTES, EncodeScratch

    # small tensors' temporaries come from malloc's heap, which reuses its memory anyway
    scratch = EncodeScratch(pool) if len(raw) >= SCRATCH_MIN_BYTES else None
    try:
        encoded = encode_tensor(raw, dtype, list(shape), config=_codec().commit_config(len(raw), len(shape)),
                                scratch=scratch)
        sizes = {store.put(blob, pending=pending, blob_hash=name): len(blob) for name, blob in encoded.named_blobs()}
        manifest = json.dumps(encoded.manifest, sort_keys=True)
        del encoded
        return manifest, sizes
    finally:
        if scratch is not None:
            scratch.release()


def load_tensor(con: duckdb.DuckDBPyConnection, store: BlobStore, tensor_hash: str) -> tuple[bytes, str, list[int]]:
    return load_tensors(con, store, [tensor_hash])[tensor_hash]


def load_tensors(
    con: duckdb.DuckDBPyConnection, store: BlobStore, tensor_hashes: list[str], *,
    progress: Progress = NULL_PROGRESS,
) -> dict[str, tuple[bytes, str, list[int]]]:
    """Decode several tensors; their catalog rows are read in one query (a checkout's hot path).
    ``progress`` counts the bytes decoded."""
    rows = catalog_tensors.tensor_rows(con, tensor_hashes)
    out: dict[str, tuple[bytes, str, list[int]]] = {}
    with progress.task("checkout", sum(r.nbytes for r in rows.values() if isinstance(r.nbytes, int))) as task:
        _decode_into(con, store, tensor_hashes, rows, out, task)
    return out


def _decode_into(con, store: BlobStore, tensor_hashes: list[str], rows, out: dict, task) -> None:
    for tensor_hash in tensor_hashes:
        if tensor_hash in out:
            continue
        row = rows.get(tensor_hash)
        if row is None:
            raise IntegrityError(
                f"tensor {tensor_hash[:16]} is referenced but not in the catalog; run `dlv fsck`"
            )
        raw = decode_row(store, row, lambda h: load_tensor(con, store, h)[0])
        out[tensor_hash] = (raw, row.dtype, row.shape)
        task.advance(len(raw))


def decode_row(store: BlobStore, row: TensorRow, load_base: Callable[[str], bytes]) -> bytes:
    """Decode one tensor from its catalog row, already read, and check it against its hash; a
    delta's base comes from ``load_base`` (the archive passes its cache of decoded tensors)."""
    try:
        return _decode_verified(store, row.tensor_hash, row.dtype, row.shape, row.nbytes, row.manifest, load_base)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # A malformed catalog row (hand-edited or damaged): name it instead of crashing.
        raise IntegrityError(
            f"tensor {row.tensor_hash[:16]} has a malformed catalog entry ({type(exc).__name__}); "
            "run `dlv fsck --deep` and restore the affected versions from a remote"
        ) from None


def _decode_verified(store: BlobStore, tensor_hash: str, dtype: str, shape, nbytes: int, encoding,
                     load_base: Callable[[str], bytes], out: memoryview | None = None) -> bytes | memoryview:
    """Decode a tensor (into ``out`` when given) and check the result against its content hash.

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
            return load_base(h)
        except ModelhubError:
            failed_bases.append(h)  # the base's own error is final: raised as it is, not retried
            raise

    try:
        raw = decode_tensor(encoding, store.read_view, nbytes, base=base, out=out)
        if _codec().tensor_matches(tensor_hash, raw, dtype, shape):
            return raw
    except MissingObjectError:
        raise
    except Exception:  # noqa: BLE001 - damaged bytes can fail anywhere in a codec; the verified pass names them
        if failed_bases:
            raise
    raw = decode_tensor(encoding, store.get, nbytes, base=base, out=out)
    if not _codec().tensor_matches(tensor_hash, raw, dtype, shape):
        raise corrupt_object(tensor_hash, "decoded tensor does not match its hash")
    return raw


# -- streaming: one tensor at a time, encoded and decoded in threads ------------------------------
#: bytes of tensors being hashed, encoded or decoded at once (at least one tensor, however large):
#: with the codecs' temporaries this bounds a streaming commit's or checkout's memory
STREAM_BYTES = 256 << 20
#: small tensors are handed to a stream's threads in batches of this many bytes (bounded_map)
BATCH_BYTES = 1 << 20

_T = TypeVar("_T")
_R = TypeVar("_R")


def stream_workers() -> int:
    """Threads for streaming encode/decode: zstd, hashing and numpy release the GIL."""
    return max(1, min(16, os.cpu_count() or 1))


def bounded_map(fn: Callable[[_T], _R], items: Iterable[_T], *, size: Callable[[_T], int],
                budget: int | None = None, workers: int | None = None,
                release_when_done: bool = False, queued: int | None = None,
                batch_bytes: int = 0) -> Iterator[_R]:
    """``map(fn, items)`` in a thread pool, results in order, with at most ``budget`` bytes
    (``size(item)``; one item at least) in flight, so memory stays bounded whatever the model.

    An item is in flight until its result is yielded, or, with ``release_when_done``, until ``fn``
    returns: for calls that let their item's memory go themselves and return little. Then a large
    item at the head of the line (a 125 MB embedding first in a checkpoint) no longer holds the
    budget while the calls behind it finish, and the threads go on with the items after them: on
    the 1.16 GB bfloat16 smoke test one of the two cores sat idle for ~0.3 s of a 2 s commit.

    ``queued``: calls submitted beyond those the threads run (default: as many as there are
    threads), so that a thread that is done finds its next item at once. Where a submitted item
    holds memory while it waits (a new tensor's mapped pages), 0 keeps that memory to the items
    being worked on.

    ``batch_bytes``: consecutive items are handed to a thread together while they add up to at
    most this many bytes (``fn`` is still called once per item, in order; an item this large or
    larger goes alone). Handing an item to a thread and its result back costs ~50-70 us, more
    than hashing or encoding a small tensor: EfficientNet-Lite0's 248 tensors (13.7 MB) committed
    faster through the API in this thread alone than in the pool; in batches of 1 MB, 0.435 ->
    0.39 s a commit and 0.195 -> 0.163 s a checkout (10 alternated in one process). The budget and
    ``queued`` then count batches as they count items; an error is raised after the results before
    it, in order, once the calls running beside it are done."""
    if batch_bytes > 0:
        # closed before an error leaves: the pool's running calls finish first, as without batches
        with closing(_bounded_map(_call_each(fn), _batches(items, size, batch_bytes), size=lambda batch: batch[1],
                                  budget=budget, workers=workers, release_when_done=release_when_done,
                                  queued=queued)) as batched:
            for results, error in batched:
                yield from results
                if error is not None:
                    raise error
        return
    yield from _bounded_map(fn, items, size=size, budget=budget, workers=workers,
                            release_when_done=release_when_done, queued=queued)


#: items in one batch of bounded_map at most (tensors of no bytes would otherwise gather without end)
_BATCH_ITEMS = 256


def _batches(items: Iterable[_T], size: Callable[[_T], int], limit: int) -> Iterator[tuple[list[_T], int]]:
    """Consecutive items in lists of at most ``limit`` bytes (an item of ``limit`` or more alone),
    each with its bytes."""
    batch: list[_T] = []
    held = 0
    for item in items:
        weight = size(item)
        if batch and (held + weight > limit or len(batch) >= _BATCH_ITEMS):
            yield batch, held
            batch, held = [], 0
        batch.append(item)
        held += weight
    if batch:
        yield batch, held


def _call_each(fn: Callable[[_T], _R]) -> Callable[[tuple[list[_T], int]], tuple[list[_R], BaseException | None]]:
    """``fn`` over a batch, in order: (the results, the error that stopped it or None). The items
    after a failed one are not called, as the calls queued behind a failure are cancelled."""
    def call(batch: tuple[list[_T], int]) -> tuple[list[_R], BaseException | None]:
        results = []
        for item in batch[0]:
            try:
                results.append(fn(item))
            except BaseException as exc:   # noqa: BLE001 - raised again by bounded_map, in order
                return results, exc
        return results, None
    return call


def _bounded_map(fn: Callable[[_T], _R], items: Iterable[_T], *, size: Callable[[_T], int],
                 budget: int | None, workers: int | None, release_when_done: bool,
                 queued: int | None) -> Iterator[_R]:
    """bounded_map, an item per call."""
    budget = STREAM_BYTES if budget is None else budget
    workers = workers or stream_workers()
    most_unfinished = workers + (workers if queued is None else queued)
    most_unyielded = 64 * workers
    with ThreadPoolExecutor(workers, thread_name_prefix="dlv-stream") as pool:
        queue: deque[Future] = deque()   # submitted, in order, not yielded yet
        weights: dict[Future, int] = {}  # those still counted against the budget
        inflight = 0

        def release(future: Future) -> None:
            nonlocal inflight
            inflight -= weights.pop(future, 0)

        def next_in_order() -> Future:
            head = queue.popleft()
            release(head)
            return head

        def wait_for_room() -> None:
            """Until a counted call is done: any one of them, or else the head (whose result the
            loop below then yields, releasing it, or raises its error)."""
            done, _ = wait(weights if release_when_done else (queue[0],), return_when=FIRST_COMPLETED)
            if release_when_done:
                for future in done:
                    release(future)

        try:
            for item in items:
                weight = size(item)
                while weights and (inflight + weight > budget or len(weights) >= most_unfinished):
                    wait_for_room()
                    while queue and queue[0].done():
                        yield next_in_order().result()
                if len(queue) >= most_unyielded:   # results waiting on a slow head: bounded too
                    yield next_in_order().result()
                future = pool.submit(fn, item)
                queue.append(future)
                weights[future] = weight
                inflight += weight
            while queue:
                yield next_in_order().result()
        finally:
            for future in queue:
                future.cancel()


@dataclass(frozen=True)
class StreamedTensor:
    """A tensor a streaming commit reads when it gets to it: ``read()`` returns its raw bytes
    (a zero-copy view of a mapped file), ``done()`` lets the caller drop them."""
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    read: Callable[[], "bytes | memoryview"]
    done: Callable[[], None]


def store_streamed(con: duckdb.DuckDBPyConnection, store: BlobStore, tensors: Sequence[StreamedTensor], *,
                   budget: int | None = None, workers: int | None = None) -> list[str]:
    """:func:`store_tensors` for tensors read one at a time: hashed in threads, looked up in the
    catalog a few at a time, and the new ones encoded and written in threads while the later ones
    are still being hashed, so that the disk is not idle while the whole model is hashed first.
    Measured on the 1.16 GB bfloat16 smoke test, commits alternated in one process with hashing
    everything first, on a disk that took ~450 MB/s: median 528 against 490 MB/s, and 459
    against 424 in a second sitting; on tmpfs (no disk wait) within noise (599 against 617)."""
    hash_name = tensor_hash_name(con)

    def hash_one(t: StreamedTensor) -> str:
        # a new tensor's pages stay mapped until it is encoded (``encode_one`` lets them go, and
        # ``_new_tensors`` those of a tensor already stored): dropping them here and faulting them in
        # again to encode was 10% of the CPU of committing the 1.16 GB bfloat16 smoke test (median of
        # 5 alternated commits: 3.54 -> 3.18 CPU-s, 2.06 -> 1.86 s on tmpfs). The pipeline bounds
        # how many are mapped: those in flight in each stage and one catalog lookup's batch.
        try:
            return _codec().tensor_hash(t.read(), t.dtype, list(t.shape), hash_name=hash_name)
        except BaseException:
            t.done()
            raise

    def nbytes(t: StreamedTensor) -> int:
        return t.nbytes

    hashes: list[str] = []   # filled in order as the tensors are hashed
    new_ones = _new_tensors(con, tensors, bounded_map(hash_one, tensors, size=nbytes, budget=budget, workers=workers,
                                                         batch_bytes=BATCH_BYTES),
                            hashes)
    pending = PendingBlobs()

    def encode_one(item: tuple[str, StreamedTensor]) -> tuple[TensorRow, dict[str, int]]:
        th, t = item
        try:
            manifest, sizes = _encode_and_put(store, pending, pool, t.read(), t.dtype, t.shape)
        finally:
            t.done()
        return TensorRow(th, t.dtype, json.dumps(list(t.shape)), t.nbytes, manifest), sizes

    rows: list[TensorRow] = []
    blobs: dict[str, int] = {}
    with pending, _scratch_pool() as pool:   # a failure before the sync removes its temp files
        # queued=0: a tensor waiting in the pool's queue would keep its pages mapped for nothing
        # (`dlv commit` of the smoke test, 5 alternated: peak RSS 612 MB with 2 queued, 565 with
        # none, at the same speed, 2.51-2.53 s; 507 MB and 2.68 s with each tensor's bytes held
        # until its result's turn)
        for row, sizes in bounded_map(encode_one, new_ones, size=lambda item: item[1].nbytes,
                                      budget=budget, workers=workers, release_when_done=True, queued=0,
                                      batch_bytes=BATCH_BYTES):
            rows.append(row)
            blobs.update(sizes)
        store.sync(pending)   # every blob fsynced (in one batch) before the rows below name it
    catalog_objects.add_blobs(con, blobs)
    catalog_tensors.insert_tensors(con, rows)
    return hashes


#: hashed tensors looked up in the catalog at once, at most (and at most this many bytes of them)
_LOOKUP_TENSORS = 256
_LOOKUP_BYTES = 64 << 20


def _new_tensors(con: duckdb.DuckDBPyConnection, tensors: Sequence[StreamedTensor], hashed: Iterable[str],
                 hashes: list[str]) -> Iterator[tuple[str, StreamedTensor]]:
    """(hash, tensor) of each tensor the catalog does not hold yet, first occurrence only, as the
    hashes come in (appended to ``hashes``, in order): looked up a few at a time, so that the
    first new tensors are encoded and written while the later ones are still being hashed."""
    seen: set[str] = set()
    batch: list[tuple[str, StreamedTensor]] = []

    def fresh() -> Iterator[tuple[str, StreamedTensor]]:
        known = catalog_tensors.known_hashes(con, [th for th, _ in batch])
        for th, t in batch:
            if th not in known and th not in seen:
                seen.add(th)
                yield th, t
            else:
                t.done()   # stored already: not read again
        batch.clear()

    size = 0
    for t, th in zip(tensors, hashed):
        hashes.append(th)
        batch.append((th, t))
        size += t.nbytes
        if len(batch) >= _LOOKUP_TENSORS or size >= _LOOKUP_BYTES:
            yield from fresh()
            size = 0
    yield from fresh()


class TensorReader:
    """Decodes a set of tensors without the catalog connection, so from several threads: their
    rows, and those of every delta base they need, are read up front."""

    def __init__(self, con: duckdb.DuckDBPyConnection, store: BlobStore, tensor_hashes: Iterable[str]) -> None:
        self.store = store
        self.rows: dict[str, TensorRow] = {}
        wanted = list(dict.fromkeys(tensor_hashes))
        while wanted:
            found = catalog_tensors.tensor_rows(con, wanted)
            missing = [h for h in wanted if h not in found]
            if missing:
                raise IntegrityError(f"tensor {missing[0][:16]} is referenced but not in the catalog; run `dlv fsck`")
            self.rows.update(found)
            bases = set()
            for h in wanted:
                try:
                    base = _codec().delta_base(found[h].manifest)
                except (ValueError, TypeError, AttributeError):
                    base = None  # a malformed row: decode() names it
                if base is not None and base not in self.rows:
                    bases.add(base)
            wanted = sorted(bases)

    def decode(self, tensor_hash: str, out: memoryview | None = None) -> bytes | memoryview:
        """The tensor's verified raw bytes (written into ``out`` and returned, when given)."""
        row = self.rows.get(tensor_hash)
        if row is None:
            raise IntegrityError(f"tensor {tensor_hash[:16]} is referenced but not in the catalog; run `dlv fsck`")
        try:
            return _decode_verified(self.store, tensor_hash, row.dtype, row.shape, row.nbytes, row.manifest,
                                    self.decode, out)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(
                f"tensor {tensor_hash[:16]} has a malformed catalog entry ({type(exc).__name__}); "
                "run `dlv fsck --deep` and restore the affected versions from a remote"
            ) from None


# -- the catalog's tensor rows, for the operations that plan, count or check tensors -------------
def snapshot_entries(con: duckdb.DuckDBPyConnection, version_id: str, snap: int) -> list[tuple[str, str]]:
    """(tensor name, tensor hash) of one snapshot in committed order."""
    return catalog_tensors.snapshot_entries(con, version_id, snap)


def record_snapshots(con: duckdb.DuckDBPyConnection, version_id: str,
                     snapshots: list[tuple[int, list[tuple[str, str]]]]) -> None:
    """List which stored tensor each snapshot of a new version holds, under which name."""
    catalog_tensors.insert_snapshot_entries(con, version_id, snapshots)


def tensor_shape(con: duckdb.DuckDBPyConnection, tensor_hash: str) -> tuple[int, ...]:
    """A stored tensor's shape, read from the catalog (no decoding)."""
    shape = catalog_tensors.shape_json(con, tensor_hash)
    if shape is None:
        raise IntegrityError(f"tensor {tensor_hash[:16]} is referenced but not in the catalog; run `dlv fsck`")
    return tuple(json.loads(shape))


def version_tensor_types(con: duckdb.DuckDBPyConnection, version_id: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """(dtype, shape) of every tensor a version's snapshots hold, by hash (no decoding)."""
    return {th: (dtype, tuple(json.loads(shape)))
            for th, (dtype, shape) in catalog_tensors.dtypes_and_shapes_of_version(con, version_id).items()}


def all_tensor_rows(con: duckdb.DuckDBPyConnection) -> list[TensorRow]:
    """Every stored tensor's catalog row (the archive's planning input)."""
    return catalog_tensors.all_tensor_rows(con)


def tensor_encodings(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Every stored tensor's manifest JSON, by hash (liveness)."""
    return catalog_tensors.encodings(con)


def set_manifest(con: duckdb.DuckDBPyConnection, tensor_hash: str, manifest: dict) -> None:
    """Store a tensor under a new encoding (its blobs already durable and verified by the caller)."""
    catalog_tensors.set_encoding(con, tensor_hash, json.dumps(manifest, sort_keys=True))


def forget_tensors(con: duckdb.DuckDBPyConnection, tensor_hashes: list[str]) -> None:
    """Drop the catalog rows of tensors no snapshot reaches (gc), and what the archive measured of them."""
    for th in tensor_hashes:
        catalog_tensors.delete_tensor(con, th)
    encoding_sizes.forget_sizes(con, tensor_hashes)


def snapshot_tensors(con: duckdb.DuckDBPyConnection) -> list[SnapshotTensor]:
    """Every snapshot's named tensors, by model, sequence number, snapshot and committed order."""
    return catalog_tensors.all_snapshot_tensors(con)


def weights_tensors(con: duckdb.DuckDBPyConnection) -> list[TensorUse]:
    """The tensors of every version's last snapshot (its weights)."""
    return catalog_tensors.weights_tensors(con)


def tensor_uses(con: duckdb.DuckDBPyConnection) -> list[TensorUse]:
    """Each distinct (version, tensor) pair over all snapshots."""
    return catalog_tensors.tensor_uses(con)


def referenced_tensors(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Every tensor some snapshot holds."""
    return catalog_tensors.referenced_hashes(con)


def dangling_tensor_uses(con: duckdb.DuckDBPyConnection) -> list[TensorUse]:
    """Snapshot entries naming a tensor the catalog lacks."""
    return catalog_tensors.dangling_uses(con)


def count_tensors(con: duckdb.DuckDBPyConnection) -> int:
    return catalog_tensors.count_tensors(con)


def logical_bytes(con: duckdb.DuckDBPyConnection) -> int:
    """Raw bytes of every snapshot counted as a full copy."""
    return catalog_tensors.logical_bytes(con)


def tensor_rows(con: duckdb.DuckDBPyConnection, tensor_hashes: Iterable[str]) -> dict[str, TensorRow]:
    """The catalog rows (dtype, shape, manifest) of several tensors, without decoding them:
    progressive evaluation reads their segments itself. Unknown hashes are absent."""
    return catalog_tensors.tensor_rows(con, list(dict.fromkeys(tensor_hashes)))
