"""Write a version out as files (`dlv checkout`, :meth:`Repo.write_checkout`): its weights as
safetensors, one tensor at a time, and its attached files.

Tensors are decoded in threads (bounded bytes in flight, see
``tensorstore.bounded_map``) and each is written straight to its offset in a
preallocated safetensors file, so a checkout never holds the model in memory.
A version committed from a sharded checkpoint is written back as shards with
the same file names plus ``model.safetensors.index.json``; any version can be
sharded on request (``max_shard_bytes``). Every file is written under a
temporary name, fsynced, and renamed into place only when all are complete,
so an interrupted checkout never leaves a half-written file under its name.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..catalog import files as catalog_files
from ..errors import InputError
from ..progress import NULL_PROGRESS, Progress
from ..storage.directio import BufferPool
from ..storage.atomic import atomic_write
from ..weightfiles import (INDEX_NAME, SHARDS_KEY, OutTensor, SafetensorsWriter, index_json, open_weights,
                           shard_names, split_shards)
from . import hotcopy
from .hotcopy import RawTensor
from .reads import refresh_hot_copy, snapshot_entries, version_header
from .records import Record, VersionInfo
from .refs import resolve
from .settings import hot_max_bytes
from .tensorstore import BATCH_BYTES, TensorReader, bounded_map, stream_workers


@dataclass(frozen=True)
class WrittenCheckout(Record):
    version: VersionInfo
    snapshot: int               # the snapshot written (the last one unless one was asked for)
    output: str                 # the safetensors file, or the folder of a sharded checkout
    bytes: int                  # the weights files' size
    n_tensors: int
    files: tuple[str, ...]      # attached files written, relative to the files folder, sorted
    weight_files: tuple[str, ...] = ()   # every weights file written (shards, then the index)
    sharded: bool = False


def default_output(version: VersionInfo, sharded: bool = False) -> Path:
    """NAME@N.safetensors (a folder NAME@N when sharded) in the current folder."""
    return Path(f"{version.model}@{version.seq}" + ("" if sharded else ".safetensors"))


def shard_layout(weights_meta: dict | None) -> dict | None:
    """The shard layout a sharded commit recorded (file names, tensor counts, metadata), if any."""
    text = (weights_meta or {}).get(SHARDS_KEY)
    if not text:
        return None
    try:
        layout = json.loads(text)
        return layout if isinstance(layout.get("shards"), list) else None
    except (ValueError, AttributeError):
        return None


def file_metadata(weights_meta: dict | None) -> dict | None:
    """A version's weights metadata as a safetensors file holds it (without dlv's own keys)."""
    if weights_meta is None:
        return None
    return {k: v for k, v in weights_meta.items() if k != SHARDS_KEY}


def wants_shards(output: Path | None, weights_meta: dict | None, max_shard_bytes: int | None) -> bool:
    """Sharded output when asked, or when the source was sharded and no single file was named."""
    if max_shard_bytes is not None:
        return True
    return shard_layout(weights_meta) is not None and (output is None or output.suffix != ".safetensors")


def write_checkout(repo, ref: str, output: Path | None = None, *, snapshot: int | None = None,
                   files_dir: Path | None = None, overwrite: bool = False, max_shard_bytes: int | None = None,
                   workers: int | None = None, progress: Progress = NULL_PROGRESS) -> WrittenCheckout:
    """Write version ``ref``'s weights (bit-exact) to ``output`` and its attached files under
    ``files_dir``, in one catalog read scope. Refuses (InputError) a wrong output path and any
    existing target unless ``overwrite``, before writing anything."""
    with repo.catalog.read() as con:
        vid = resolve(con, ref)
        header = version_header(con, vid)
        count = header.n_snapshots
        if snapshot is not None and not -count <= snapshot < count:
            raise InputError(f"version {ref} has {count} snapshot(s); choose a snapshot from 0 to {count - 1}")
        snap = count - 1 if snapshot is None else snapshot % count
        info, meta = header.info, header.weights_meta
        sharded = wants_shards(output, meta, max_shard_bytes)
        out = Path(output) if output is not None else default_output(info, sharded)
        if not sharded and out.suffix != ".safetensors":
            raise InputError(f"{out}: checkout writes safetensors; give a path ending in .safetensors")
        if sharded and out.suffix == ".safetensors":
            raise InputError(f"{out}: a sharded checkout writes a folder of shards; give a folder path")
        if sharded and out.exists() and not out.is_dir():
            raise InputError(f"{out} is a file; a sharded checkout writes a folder of shards: give a folder path with -o")
        entries = snapshot_entries(con, vid, snap)
        reader = TensorReader(con, repo.store, [th for _, th in entries])
        tensors = [OutTensor(name, reader.rows[th].dtype, tuple(reader.rows[th].shape), reader.rows[th].nbytes)
                   for name, th in entries]
        hashes = {name: th for name, th in entries}
        attached = {f.path: f.blob_hash for f in catalog_files.version_files(con, vid)} if files_dir is not None else {}
        groups = _groups(tensors, meta, max_shard_bytes) if sharded else [(out.name, tensors, file_metadata(meta))]
        folder = out if sharded else out.parent
        targets = [folder / name for name, _, _ in groups] + ([folder / INDEX_NAME] if sharded else [])
        attached_targets = [files_dir / rel for rel in attached] if files_dir is not None else []
        if not overwrite:
            existing = [str(t) for t in targets + attached_targets if t.exists()]
            if existing:
                raise InputError(f"{existing[0]} exists; pass --force to overwrite or choose another path with -o")
        hot_tensors = None
        if snap == count - 1 and hotcopy.enabled():
            hot_tensors = repo.hot.read_raw(vid, entries)   # verified, mapped: copying it is the fast path
        warms = hot_tensors is None and header.is_latest and snap == count - 1 and hotcopy.enabled()
        total_bytes = sum(t.nbytes for t in tensors)
        if warms:
            cap = hot_max_bytes(con)
            warms = cap is None or 0 < total_bytes <= cap
        # Past the page cache (storage.directio), unless the hot copy is about to be made
        # from the file just written: then the cached pages are read again at once.
        direct = not warms
        pool = BufferPool()
        writers: list[SafetensorsWriter] = []
        new_folders = _missing_folders(folder)
        try:
            for name, group, group_meta in groups:
                writers.append(SafetensorsWriter(folder / name, group, group_meta, direct=direct, pool=pool))
            jobs = _files_in_step(writers, groups)

            def write_one(job: tuple[SafetensorsWriter, OutTensor]) -> None:
                writer, t = job
                if hot_tensors is not None:
                    writer.write(t.name, hot_tensors[t.name])
                else:
                    with writer.tensor_buffer(t.name) as buf:   # decoded in place, written from there
                        reader.decode(hashes[t.name], out=buf)

            if workers is None and any(w.writes_direct for w in writers):
                # a direct write waits for the disk with the GIL released: two more threads
                # decode meanwhile (measured on 2 cores: 2 threads 0.9-1.1, 4 threads 1.0-1.35 GB/s)
                workers = stream_workers() + 2
            with progress.task(f"checkout {info.ref}", total_bytes) as task:
                for _, job in zip(bounded_map(write_one, jobs, size=lambda job: job[1].nbytes, workers=workers,
                                             release_when_done=True, batch_bytes=BATCH_BYTES), jobs):
                    task.advance(job[1].nbytes)
            for w in writers:
                w.finish()
        except BaseException:
            for w in writers:
                w.abort()
            _remove_if_empty(new_folders)
            raise
        finally:
            pool.close()
        contents = {rel: repo.store.get(blob_hash) for rel, blob_hash in attached.items()}
    for w in writers:
        w.publish()
    total = sum(w.size for w in writers)
    if sharded:
        weight_map = {t.name: name for name, group, _ in groups for t in group}
        layout = shard_layout(meta)
        atomic_write(folder / INDEX_NAME, index_json(weight_map, layout.get("index_metadata") if layout else None,
                                                     sum(t.nbytes for t in tensors)))
    for rel, content in contents.items():
        atomic_write(files_dir / rel, content)
    if hot_tensors is None and header.is_latest and snap == count - 1:
        _warm_hot_copy(repo, vid, entries, targets[0] if not sharded else folder / INDEX_NAME)
    return WrittenCheckout(version=info, snapshot=snap, output=str(out), bytes=total, n_tensors=len(tensors),
                           files=tuple(sorted(attached)), weight_files=tuple(str(t) for t in targets),
                           sharded=sharded)


def _files_in_step(writers: list[SafetensorsWriter], groups) -> list[tuple[SafetensorsWriter, OutTensor]]:
    """Every tensor's (writer, tensor), the shards taken in step: ordered by how far into its own
    file each tensor starts, so the threads mostly write different files. A write through the page
    cache holds its file's lock (every common file system takes it), so two threads writing one
    file take turns: 1.16 GB written to tmpfs by two threads in 64 MB writes took 0.75 s into one
    file and 0.38 s into two."""
    jobs = [(w, t) for w, (_, group, _) in zip(writers, groups) for t in group]
    return sorted(jobs, key=lambda job: job[0].offsets[job[1].name] / max(job[0].size, 1))


def _missing_folders(folder: Path) -> list[Path]:
    """The folders a checkout into ``folder`` will create, deepest first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def _remove_if_empty(folders: list[Path]) -> None:
    """A failed checkout takes back the folders it created (deepest first), where nothing else
    was put in them meanwhile."""
    for path in folders:
        try:
            path.rmdir()
        except OSError:
            return


def _groups(tensors: list[OutTensor], meta: dict | None, max_shard_bytes: int | None):
    """(file name, tensors, file metadata) of each shard: the source's layout when it had one
    and no size was asked for, else Hugging Face's names over ``max_shard_bytes`` groups."""
    layout = shard_layout(meta)
    if max_shard_bytes is None and layout is not None:
        counts = [int(c) for _, c, _ in layout["shards"]]
        if sum(counts) == len(tensors):
            out, start = [], 0
            for (name, c, shard_meta) in layout["shards"]:
                out.append((name, tensors[start:start + int(c)], shard_meta))
                start += int(c)
            return out
    if max_shard_bytes is not None and max_shard_bytes <= 0:
        raise InputError("--max-shard-size must be positive; write e.g. 5G")
    groups = split_shards(tensors, max_shard_bytes or (5 << 30))
    file_meta = file_metadata(meta)
    return [(name, group, file_meta) for name, group in zip(shard_names(len(groups)), groups)]


def _warm_hot_copy(repo, vid: str, entries, written: Path) -> None:
    """A latest version checked out cold gets its hot copy, copied from the file(s) just written."""
    with repo.catalog.read() as con:
        cap = hot_max_bytes(con)
    try:
        with open_weights(written) as src:
            if set(src) != {name for name, _ in entries}:
                return
            items = [RawTensor(s.dtype, s.shape, s.nbytes, lambda s=s: src.view(s), lambda s=s: src.release(s))
                     for s in (src[name] for name, _ in entries)]
            refresh_hot_copy(repo.hot, vid, entries, items, set(), cap)
    except (OSError, InputError):
        pass  # a cache: the next checkout decodes again
