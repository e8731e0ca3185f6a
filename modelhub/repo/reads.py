"""Catalog reads shared by the repository operations."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping

from typing import TYPE_CHECKING

import duckdb

from ..catalog import graphs as catalog_graphs
from ..catalog import snapshots as catalog_snapshots
from ..catalog import versions as catalog_versions
from ..catalog.versions import VersionRow
from ..errors import IntegrityError, RefError
from ..netdef import Graph
from ..progress import NULL_PROGRESS, Progress
from . import hotcopy
from .hotcopy import HotCopies
from .records import VersionInfo
from .settings import hot_max_bytes

if TYPE_CHECKING:  # reading metadata (log, desc, list) must not import torch
    import torch


def _info(row: VersionRow, parents: tuple[str, ...], run_status: str | None = None) -> VersionInfo:
    return VersionInfo(
        id=row.id, model=row.model, seq=row.seq, message=row.message, author=row.author, created_at=row.created_at,
        parents=parents, n_params=row.n_params, n_tensors=row.n_tensors, logical_bytes=row.logical_bytes,
        run_status=run_status,
    )


def version_info(con: duckdb.DuckDBPyConnection, version_id: str) -> VersionInfo:
    row = catalog_versions.version_row(con, version_id)
    if row is None:
        raise RefError(f"version {version_id[:12]} is not in the catalog; `dlv log` lists the versions")
    return _info(row, catalog_versions.parents_of(con, version_id), catalog_versions.run_status_of(con, version_id))


def all_versions(con: duckdb.DuckDBPyConnection, model: str | None = None) -> list[VersionInfo]:
    return [_info(row, parents, status) for row, parents, status in catalog_versions.version_log(con, model)]


def version_graph(con: duckdb.DuckDBPyConnection, version_id: str) -> Graph | None:
    definition = catalog_graphs.definition_of_version(con, version_id)
    if definition is None:
        return None
    return _parse_graph(definition, version_id)


def _parse_graph(definition: str, version_id: str) -> Graph:
    try:
        return Graph.from_json(definition)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise IntegrityError(
            f"the network definition of version {version_id[:12]} is malformed in the catalog; "
            "restore the version from a remote (`dlv pull`) or a backup"
        ) from None


def hparams_of(con: duckdb.DuckDBPyConnection, version_id: str) -> dict:
    return catalog_versions.hparams(con, version_id)


def n_snapshots(con: duckdb.DuckDBPyConnection, version_id: str) -> int:
    return catalog_snapshots.count(con, version_id)


def snapshot_entries(con: duckdb.DuckDBPyConnection, version_id: str, snap: int | None = None) -> list[tuple[str, str]]:
    """(tensor name, tensor hash) of a snapshot in committed order; default: the last snapshot."""
    if snap is None:
        snap = n_snapshots(con, version_id) - 1
    from .tensorstore import snapshot_entries as stored_entries  # codecs: only for reads of tensors
    return stored_entries(con, version_id, snap)


@dataclass(frozen=True)
class VersionHeader:
    """What a checkout needs besides the tensors, read in one query."""
    info: VersionInfo
    graph_json: str | None
    hparams: dict
    weights_meta: dict | None
    n_snapshots: int
    is_latest: bool

    def graph(self) -> Graph | None:
        return None if self.graph_json is None else _parse_graph(self.graph_json, self.info.id)


def version_header(con: duckdb.DuckDBPyConnection, version_id: str) -> VersionHeader:
    row = catalog_versions.version_header(con, version_id)
    if row is None:
        raise RefError(f"version {version_id[:12]} is not in the catalog; `dlv log` lists the versions")
    return VersionHeader(
        info=_info(row.version, row.parents), graph_json=row.graph_json, hparams=row.hparams,
        weights_meta=row.weights_meta, n_snapshots=row.n_snapshots, is_latest=row.is_latest,
    )


def load_state_dict(con, store, version_id: str, snap: int | None = None, *,
                    hot: HotCopies | None = None, header: VersionHeader | None = None,
                    progress: Progress = NULL_PROGRESS) -> "OrderedDict[str, torch.Tensor]":
    """A snapshot's tensors (default: the last one), bit-exact.

    With ``hot`` and the version's ``header``, the last snapshot of a model's
    latest version comes from its verified hot copy when there is one;
    otherwise it is decoded from the archive and the hot copy written for the
    next checkout (see hotcopy.py).
    """
    use_hot = (hot is not None and header is not None and snap in (None, header.n_snapshots - 1)
               and hotcopy.enabled())
    entries = snapshot_entries(con, version_id, header.n_snapshots - 1 if use_hot else snap)
    if use_hot:
        state = hot.read(version_id, entries)
        if state is not None:
            return state
    from ..tensorio import raw_to_tensor

    from .tensorstore import load_tensors
    decoded = load_tensors(con, store, [th for _, th in entries], progress=progress)
    state = OrderedDict((name, raw_to_tensor(*decoded[th])) for name, th in entries)
    if use_hot and header.is_latest:
        refresh_hot_copy(hot, version_id, entries, state, set(), hot_max_bytes(con))
    return state


def latest_version_ids(con) -> set[str]:
    """The newest version of every model (the ones that keep hot copies)."""
    return catalog_versions.latest_version_ids(con)


def refresh_hot_copy(hot: HotCopies, version_id: str, entries, tensors, evict: set[str], cap: int | None) -> None:
    """Write ``version_id``'s hot copy and drop those of ``evict`` (other versions of its model).

    ``tensors``: name -> tensor, or a list of :class:`hotcopy.RawTensor` in
    ``entries`` order (a streaming commit). ``cap``: the bytes all hot copies
    may take (:func:`settings.hot_max_bytes`); a version larger than that
    gets none. A cache: failing to write it (disk full, read-only repository)
    never fails the operation that asked for it.
    """
    if not hotcopy.enabled():
        return
    try:
        hot.retain(set(), among=evict - {version_id})
        if cap is not None and (cap == 0 or _raw_size(tensors) > cap):
            hot.retain(set(), among={version_id})
            return
        if isinstance(tensors, Mapping):
            hot.write(version_id, entries, tensors)  # removes its temp file if it fails
        else:
            hot.write_raw(version_id, entries, tensors)
        hot.enforce_cap(cap, keep=version_id)
    except OSError:
        pass  # the next checkout decodes from the archive and tries again


def _raw_size(tensors) -> int:
    if isinstance(tensors, Mapping):
        return sum(t.numel() * t.element_size() for t in tensors.values())
    return sum(t.nbytes for t in tensors)


def weights_meta(con, version_id: str) -> dict | None:
    return catalog_versions.weights_meta(con, version_id)


def latest_metrics(con, version_id: str) -> dict[str, float]:
    return catalog_versions.latest_metrics(con, version_id)
