"""Commit a model version: network graph, weights (snapshots), hparams, metrics, files, lineage.

Order of durability: every blob is written (temp -> fsync -> rename) before
the single catalog transaction that references it; a crash before the
transaction commits leaves only unreferenced blobs (collected by gc), never
a half-committed version.
"""
from __future__ import annotations

import getpass
import hashlib
import json
import os
import sys
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

import duckdb

from ..catalog import files as catalog_files
from ..catalog import graphs as catalog_graphs
from ..catalog import snapshots as catalog_snapshots
from ..catalog import versions as catalog_versions
from ..catalog.files import StoredFile
from ..catalog.graphs import GraphNodeRow, NewGraph
from ..catalog.versions import NewVersion
from ..errors import InputError, WeightsError
from ..netdef import Graph
from ..progress import NULL_PROGRESS, Progress
from ..weightfiles import WeightsSource, is_streamable, open_weights
from .hotcopy import RawTensor
from .refs import LATEST, check_model_name, resolve
from .tensorstore import StreamedTensor, put_blob, record_snapshots, store_streamed, store_tensors

if TYPE_CHECKING:
    import torch
    from torch import nn

MetricsInput = Mapping[str, "float | Sequence[float] | Sequence[tuple[int, float]]"]


@dataclass(frozen=True)
class CommitRequest:
    """Everything a commit needs, validated before the repository is touched."""
    name: str
    message: str
    author: str
    # snapshots, oldest first; last = the weights (a WeightsSource: read one tensor at a time)
    state_dicts: tuple["OrderedDict[str, torch.Tensor] | WeightsSource", ...]
    snapshot_steps: tuple[int | None, ...]
    graph: Graph | None
    inherit_graph: bool                 # no graph given: reuse the parent's if the weights fit it
    parents: tuple[str, ...]            # references, resolved inside the transaction
    hparams: dict
    metrics: tuple[tuple[str, int, float], ...]
    files: tuple[tuple[str, bytes], ...]
    weights_meta: dict | None
    #: keys of the first parent's hparams that ``hparams`` does not name are kept (`dlv commit` of new weights:
    #: otherwise `dlv diff` would report them removed); merged inside the transaction, where the parent is chosen
    inherit_hparams: bool = False


def build_request(
    model: nn.Module | Mapping[str, torch.Tensor] | str | os.PathLike,
    *,
    name: str,
    message: str | bytes,
    parent: str | Sequence[str] | None = LATEST,
    hparams: Mapping[str, Any] | None = None,
    metrics: MetricsInput | None = None,
    files: Iterable[str | os.PathLike] | Mapping[str, bytes] | None = None,
    author: str | None = None,
    snapshots: Sequence[nn.Module | Mapping[str, torch.Tensor]] = (),
    snapshot_steps: Sequence[int | None] | None = None,
    graph: Graph | None = None,
    weights_meta: dict | None = None,
    root: Path | None = None,
    inherit_hparams: bool = False,
) -> CommitRequest:
    check_model_name(name)
    message = check_message(message)
    if isinstance(model, (str, os.PathLike)) and is_streamable(model):
        # a safetensors file, sharded checkpoint (index JSON) or folder: streamed, never loaded whole
        if snapshots:
            raise InputError("a commit from a weights file takes no snapshots; pass the snapshots and the "
                             "weights as state dicts, or commit them as versions of their own")
        state = open_weights(model)
        if weights_meta is None:
            weights_meta = state.weights_meta()
    elif isinstance(model, (str, os.PathLike)):   # .pt/.pth/.bin: a pickle is read whole
        from ..tensorio import load_weights_file
        state, file_meta = load_weights_file(model)
        weights_meta = file_meta if weights_meta is None else weights_meta
    elif _is_module(model):
        from ..netdef import capture
        state = OrderedDict(model.state_dict())
        graph = graph or capture(model)
    else:
        from ..tensorio import as_state_dict
        state = as_state_dict(model, "the committed object")
    snaps = tuple(_state_of(s) for s in snapshots) + (state,)
    steps = tuple(snapshot_steps) if snapshot_steps is not None else (None,) * len(snaps)
    if len(steps) != len(snaps):
        raise InputError(f"snapshot_steps has {len(steps)} entries for {len(snaps)} snapshots (the snapshots plus the final weights)")
    if graph is not None:
        check_weights_fit(graph, state)
    parents = (parent,) if isinstance(parent, str) else tuple(parent or ())
    return CommitRequest(
        name=name, message=message, author=author or default_author(), state_dicts=snaps,
        snapshot_steps=steps, graph=graph, inherit_graph=graph is None, parents=parents,
        hparams=check_hparams(hparams or {}), metrics=normalize_metrics(metrics or {}),
        files=read_files(files, root), weights_meta=weights_meta, inherit_hparams=inherit_hparams,
    )


def _is_module(obj: object) -> bool:
    """Whether ``obj`` is a torch module, without importing torch: a commit streamed from a
    weights file never needs it (its import was seconds of such a commit's start-up)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _state_of(obj: nn.Module | Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    if _is_module(obj):
        return OrderedDict(obj.state_dict())
    from ..tensorio import as_state_dict
    return as_state_dict(obj, "a snapshot")


def default_author() -> str:
    env = os.environ.get("DLV_AUTHOR")
    if env:
        return env
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user database (containers)
        return "unknown"


def check_message(message: str | bytes) -> str:
    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError("the commit message is not valid UTF-8; re-type it in a UTF-8 terminal or use -F FILE with UTF-8 text") from None
    if not isinstance(message, str) or not message.strip():
        raise InputError("the commit message is empty; say what changed with -m \"...\"")
    if "\x00" in message:
        raise InputError("the commit message contains a NUL character; remove it")
    try:
        message.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("the commit message is not valid UTF-8 (it holds lone surrogates); re-type it") from None
    return message.strip()


def check_hparams(hparams: Mapping[str, Any]) -> dict:
    out = {}
    for key, value in hparams.items():
        if not isinstance(key, str) or not key or not all(c.isalnum() or c in "_.-" for c in key):
            raise InputError(f"invalid hyperparameter name {key!r}: use letters, digits, '_', '.' or '-'")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise InputError(f"hyperparameter {key!r} = {value!r} is not a JSON value (number, string, bool, list or dict)") from None
        out[key] = value
    return out


def normalize_metrics(metrics: MetricsInput) -> tuple[tuple[str, int, float], ...]:
    """Accept {name: value}, {name: [v0, v1, ...]} or {name: [(step, v), ...]}."""
    rows: list[tuple[str, int, float]] = []
    for name, series in metrics.items():
        if not isinstance(name, str) or not name:
            raise InputError(f"invalid metric name {name!r}")
        if isinstance(series, (int, float)) and not isinstance(series, bool):
            points = [(0, float(series))]
        else:
            points = []
            for i, item in enumerate(series):  # type: ignore[arg-type]
                if isinstance(item, (tuple, list)) and len(item) == 2:
                    points.append((int(item[0]), float(item[1])))
                else:
                    points.append((i, float(item)))
        steps = [s for s, _ in points]
        if len(set(steps)) != len(steps):
            raise InputError(f"metric {name!r} has two values for the same step; give each step once")
        # NaN and +-inf are stored as given: a diverged run's loss is a fact worth keeping.
        rows.extend((name, step, value) for step, value in points)
    return tuple(rows)


def read_files(
    files: Iterable[str | os.PathLike] | Mapping[str, bytes] | None, root: Path | None = None
) -> tuple[tuple[str, bytes], ...]:
    """Files as (path relative to the working folder ``root``, bytes), sorted by path.

    Paths on disk are opened as given (a relative one from the current folder)
    and stored relative to ``root`` (like git, a file outside the working folder
    is refused); a mapping gives relative paths directly.
    """
    if not files:
        return ()
    if isinstance(files, Mapping):
        return tuple(sorted((normalize_path(k), bytes(v)) for k, v in files.items()))
    out = []
    for f in files:
        p = Path(f)
        if not p.is_file():
            raise InputError(f"file {p} does not exist or is not a regular file; check the path")
        rel = p.as_posix()
        if root is not None:
            try:
                rel = p.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                raise InputError(
                    f"file {p} is outside the working folder {root}; copy it into the folder first"
                ) from None
        out.append((normalize_path(rel), p.read_bytes()))
    return tuple(sorted(out))


def normalize_path(path: str) -> str:
    parts = [p for p in Path(path).as_posix().split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise InputError(f"file path {path!r} must be relative and stay inside the working folder")
    return "/".join(parts)


def check_weights_fit(graph: Graph, state: Mapping[str, torch.Tensor]) -> None:
    """Every layer's parameters must be present with the declared shapes."""
    for node in graph.layers:
        for local, shape in node.param_shapes.items():
            key = f"{node.name}.{local}"
            if key not in state:
                raise WeightsError(
                    f"the weights lack {key!r}, which layer {node.name!r} ({node.op}) declares; "
                    "commit weights saved from the same architecture, or declare the new network with --model"
                )
            got = list(state[key].shape)
            if got != list(shape):
                raise WeightsError(
                    f"shape mismatch for {key!r}: the weights have {got} but layer {node.name!r} "
                    f"({node.op}) declares {list(shape)}; commit weights of the same architecture, "
                    "or declare the new network with --model"
                )


def graph_fits(graph: Graph, state: Mapping[str, torch.Tensor]) -> bool:
    try:
        check_weights_fit(graph, state)
    except WeightsError:
        return False
    expected = {f"{n.name}.{k}" for n in graph.layers for k in n.param_shapes}
    return expected == set(state)


# -- the transaction ---------------------------------------------------------------------------

def write_commit(con: duckdb.DuckDBPyConnection, store, req: CommitRequest, *,
                 progress: Progress = NULL_PROGRESS) -> str:
    """Apply a validated request inside the caller's write transaction; returns the version id.
    ``progress`` counts the tensor bytes encoded and stored (all snapshots)."""
    if req.parents == (LATEST,):
        latest = catalog_versions.latest_id(con, req.name)
        parent_ids: tuple[str, ...] = (latest,) if latest is not None else ()
    else:
        parent_ids = tuple(resolve(con, p) for p in req.parents)
    if req.inherit_hparams and parent_ids:
        req = replace(req, hparams={**catalog_versions.hparams(con, parent_ids[0]), **req.hparams})
    graph = req.graph
    if graph is None and req.inherit_graph and parent_ids:
        graph = _parent_graph(con, parent_ids[0], req.state_dicts[-1])

    now = datetime.now(timezone.utc).replace(tzinfo=None)
    snapshot_rows: list[tuple[int, list[tuple[str, str]]]] = []
    logical = 0
    total = sum(state.total_bytes if isinstance(state, WeightsSource)
                else sum(t.numel() * t.element_size() for t in state.values()) for state in req.state_dicts)
    with progress.task(f"commit {req.name}", total) as task:
        for snap, state in enumerate(req.state_dicts):
            if isinstance(state, WeightsSource):
                hashes = store_streamed(con, store, streamed_tensors(state))
                snapshot_rows.append((snap, list(zip(state, hashes))))
                if snap == len(req.state_dicts) - 1:
                    logical += state.total_bytes
                task.advance(state.total_bytes)
                continue
            from ..tensorio import tensor_to_raw
            entries = []
            for batch in _batches(list(state.items())):
                raws = [tensor_to_raw(tensor) for _, tensor in batch]
                hashes = store_tensors(con, store, raws)
                entries.extend((tname, th) for (tname, _), th in zip(batch, hashes))
                size = sum(len(raw) for raw, _, _ in raws)
                if snap == len(req.state_dicts) - 1:
                    logical += size
                task.advance(size)
            snapshot_rows.append((snap, entries))
    final = req.state_dicts[-1]
    n_params = _n_params(final)

    version_id = _version_id(req, parent_ids, graph, snapshot_rows, now)
    catalog_versions.ensure_model(con, req.name, now)
    seq = catalog_versions.next_seq(con, req.name)
    graph_hash = _store_graph(con, graph) if graph is not None else None
    catalog_versions.insert_version(con, NewVersion(
        id=version_id, model=req.name, seq=seq, message=req.message, author=req.author, created_at=now,
        graph_hash=graph_hash, n_params=n_params, n_tensors=len(final), logical_bytes=logical,
        weights_meta=req.weights_meta), parent_ids)
    # rows go in one statement per table (DuckDB runs executemany row by row, ~0.3 ms each)
    catalog_versions.insert_hparams(con, version_id, req.hparams)
    catalog_versions.insert_metrics(con, version_id, req.metrics)
    catalog_snapshots.insert_snapshots(con, version_id, list(req.snapshot_steps))
    record_snapshots(con, version_id, snapshot_rows)
    attached = {f.path: (f.blob_hash, f.size) for f in catalog_files.staged_files(con)}
    for path, data in req.files:
        attached[path] = (put_blob(con, store, data), len(data))
    catalog_files.attach_files(con, version_id, [StoredFile(path, blob_hash, size)
                                                 for path, (blob_hash, size) in sorted(attached.items())])
    catalog_files.clear_staged(con)
    return version_id


def _n_params(state) -> int:
    if isinstance(state, WeightsSource):
        return sum(s.numel for s in state.specs if s.dtype.startswith(("float", "bfloat", "complex")))
    return int(sum(t.numel() for t in state.values() if t.is_floating_point() or t.is_complex()))


def streamed_tensors(source: WeightsSource) -> list[StreamedTensor]:
    """The source's tensors as a streaming commit reads them (mapped, released after use)."""
    return [StreamedTensor(s.dtype, s.shape, s.nbytes, lambda s=s: source.view(s), lambda s=s: source.release(s))
            for s in source.specs]


def hot_copy_items(state) -> "Mapping[str, torch.Tensor] | list[RawTensor]":
    """What the hot copy writer takes for a request's final weights."""
    if isinstance(state, WeightsSource):
        return [RawTensor(s.dtype, s.shape, s.nbytes, lambda s=s: state.view(s), lambda s=s: state.release(s))
                for s in state.specs]
    return state


def close_request(req: CommitRequest) -> None:
    """Unmap the weights files a request streamed from."""
    for state in req.state_dicts:
        if isinstance(state, WeightsSource):
            state.close()


def _batches(items: list, max_bytes: int = 256 << 20) -> Iterator[list]:
    """Tensors in groups of at most ``max_bytes`` (one catalog lookup per group, bounded memory)."""
    group: list = []
    size = 0
    for item in items:
        nbytes = item[1].numel() * item[1].element_size()
        if group and size + nbytes > max_bytes:
            yield group
            group, size = [], 0
        group.append(item)
        size += nbytes
    if group:
        yield group


def _parent_graph(con, parent_id: str, state) -> Graph | None:
    """The parent's network, which weights-only commits inherit -- only if they fit it."""
    definition = catalog_graphs.definition_of_version(con, parent_id)
    if definition is None:
        return None
    graph = Graph.from_json(definition)
    if graph_fits(graph, state):
        return graph
    check_weights_fit(graph, state)  # names the first missing or mis-shaped tensor
    extra = sorted(set(state) - {f"{n.name}.{k}" for n in graph.layers for k in n.param_shapes})
    raise WeightsError(
        f"the weights hold {extra[0]!r}, which the parent's network does not declare; "
        "declare the new network with --model FILE.py:Factory (graph= in Python) or start a new lineage with --no-parent"
    )


def _store_graph(con, graph: Graph) -> str:
    gh = graph.hash
    if catalog_graphs.has_graph(con, gh):
        return gh
    catalog_graphs.insert_graph(con, NewGraph(
        graph_hash=gh, traced=graph.traced, rebuildable=graph.rebuildable, n_layers=len(graph.layers),
        definition=graph.canonical(),
        nodes=tuple(GraphNodeRow(i, n.name, n.kind, n.op, json.dumps(n.attrs, sort_keys=True), n.n_params)
                    for i, n in enumerate(graph.nodes)),
        edges=tuple(graph.edges()),
    ))
    return gh


def _version_id(req: CommitRequest, parents, graph: Graph | None, snapshot_rows, now: datetime) -> str:
    doc = {
        "model": req.name, "parents": list(parents), "graph": graph.hash if graph else None,
        "snapshots": snapshot_rows, "hparams": req.hparams, "metrics": list(req.metrics),
        "message": req.message, "author": req.author, "time": now.isoformat(),
        "files": [(p, hashlib.blake2b(d, digest_size=16).hexdigest()) for p, d in req.files],
        "nonce": os.urandom(8).hex(),  # two identical commits are still two versions
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
