"""A Repo as the engine sees it: the adapter behind ``modelhub.engine.access.RepositoryAccess``.

The engine and progressive evaluation sit below the repository layer, so they
never import it; `evaluate`, `dlv eval` and progressive evaluation receive
``engine_access(repo)`` instead. Each method is one repository operation or one
catalog read scope, using the same reads as the rest of the repository
(reads.py, tensorstore.py, catalog/objects.py, catalog/features.py), so the
engine repeats none of them.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from torch import nn

from ..catalog import objects as catalog_objects
from ..catalog.features import Materialization, record_materialization
from ..engine.access import CommittedVersion, RepositoryAccess, SourceVersion, StoredNetwork, StoredTensor
from ..engine.data import DataView
from ..engine.features import ChunkInfo
from ..errors import IntegrityError
from ..netdef import Graph
from .reads import n_snapshots, snapshot_entries, version_graph
from .tensorstore import tensor_rows


class RepoEngineAccess:
    """:class:`RepositoryAccess` over a Repo (one catalog scope per call).

    ``repo`` is a :class:`modelhub.repo.repository.Repo`; this module does not import it, since
    the Repo facade imports this one (Repo.eval, repo.query)."""

    def __init__(self, repo) -> None:
        self._repo = repo

    # -- VersionWeights (progressive evaluation) ----------------------------------------
    def resolve(self, ref: str) -> str:
        return self._repo.resolve(ref)

    def stored_network(self, version_id: str) -> StoredNetwork | None:
        with self._repo.catalog.read() as con:
            graph = version_graph(con, version_id)
        # versions.graph_hash is graph.hash of the stored definition (commit.py, remote/validate.py)
        return None if graph is None else StoredNetwork(graph.hash, graph)

    def weight_hashes(self, version_id: str, snapshot: int | None = None) -> list[tuple[str, str]]:
        with self._repo.catalog.read() as con:
            return snapshot_entries(con, version_id, snapshot)

    def snapshot_count(self, version_id: str) -> int:
        with self._repo.catalog.read() as con:
            return n_snapshots(con, version_id)

    def stored_tensors(self, tensor_hashes: Iterable[str]) -> dict[str, StoredTensor]:
        with self._repo.catalog.read() as con:
            rows = tensor_rows(con, tensor_hashes)
        out: dict[str, StoredTensor] = {}
        for h, row in rows.items():
            try:
                out[h] = StoredTensor(h, row.dtype, tuple(row.shape), row.nbytes, row.manifest)
            except (ValueError, TypeError):
                raise IntegrityError(f"tensor {h[:16]} has a malformed catalog entry; run `dlv fsck --deep` and "
                                     "restore the affected versions from a remote") from None
        return out

    def blob_sizes(self, blob_hashes: Iterable[str]) -> dict[str, int]:
        wanted = set(blob_hashes)
        with self._repo.catalog.read() as con:
            listed = catalog_objects.blob_sizes(con)
        return {h: size for h, size in listed.items() if h in wanted}

    def fetch_blob(self, blob_hash: str) -> bytes:
        return self._repo.store.get(blob_hash)    # looked up per call: tests watch the store's reads

    # -- RepositoryAccess (evaluate) ------------------------------------------------------
    @property
    def features_root(self) -> Path:
        return Path(self._repo.paths.features)

    def checkout(self, ref: str) -> SourceVersion:
        co = self._repo.checkout(ref)
        return SourceVersion(co.version.id, co.version.ref, co.version.model, co.module, co.graph)

    def commit(self, model: nn.Module, *, name: str, parent: str, message: str, hparams: Mapping[str, Any],
               metrics: Mapping[str, Any], graph: Graph | None, snapshots: Sequence[Mapping[str, Any]],
               snapshot_steps: Sequence[int], hot_copy: bool) -> CommittedVersion:
        info = self._repo.commit(model, name=name, parent=parent, message=message, hparams=hparams,
                                 metrics=metrics, graph=graph, snapshots=snapshots,
                                 snapshot_steps=snapshot_steps, hot_copy=hot_copy)
        return CommittedVersion(info.id, info.ref)

    def dataset(self, ref: str) -> DataView:
        return self._repo.dataset(ref)

    def record_feature_chunk(self, chunk: ChunkInfo, path: str) -> None:
        row = Materialization(chunk.prefix, chunk.dataset_uid, chunk.dtype, chunk.start, chunk.end, path,
                              chunk.nbytes, chunk.checksum, datetime.now(timezone.utc).replace(tzinfo=None))
        with self._repo.catalog.write() as con:
            record_materialization(con, row)


def engine_access(repo) -> RepositoryAccess:
    """The engine's view of ``repo``: pass it to ``modelhub.engine.run_evaluate``,
    ``evaluate_version`` and ``modelhub.progressive.evaluate_progressive``."""
    return RepoEngineAccess(repo)
