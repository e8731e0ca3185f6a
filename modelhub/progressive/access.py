"""What progressive evaluation needs from a repository: a version's network and its archived weights.

Progressive evaluation sits below the repository layer, so it never imports
modelhub.repo and runs no SQL: the repository hands it an object with these
few reads (``modelhub/repo/engine_access.py`` implements them on a Repo).
The engine's wider :class:`modelhub.engine.access.RepositoryAccess` extends
this protocol, so one adapter serves both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol

from ..netdef import Graph


@dataclass(frozen=True)
class StoredNetwork:
    """A version's network as the catalog stores it."""
    graph_hash: str          # content hash of the graph (versions.graph_hash)
    graph: Graph


@dataclass(frozen=True)
class StoredTensor:
    """A tensor's archive entry: how its bytes are encoded, not the bytes themselves."""
    tensor_hash: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int              # decoded size
    manifest: dict           # the storage codec's manifest (blobs, segments, delta base, ...)


class VersionWeights(Protocol):
    """Reads of a version's network and weights that load no tensor."""

    def resolve(self, ref: str) -> str:
        """The full version id of ``ref`` (NAME, NAME@N, a hash prefix)."""
        ...

    def stored_network(self, version_id: str) -> StoredNetwork | None:
        """The version's network graph, or None when only a state dict was committed."""
        ...

    def weight_hashes(self, version_id: str, snapshot: int | None = None) -> list[tuple[str, str]]:
        """(tensor name, tensor hash) of the version's weights in committed order: snapshot
        ``snapshot`` (0 = the oldest), by default the last one (the committed weights)."""
        ...

    def snapshot_count(self, version_id: str) -> int:
        """How many weight snapshots the version stores (1 unless it was committed with snapshots)."""
        ...

    def stored_tensors(self, tensor_hashes: Iterable[str]) -> dict[str, StoredTensor]:
        """The archive entries of these tensors; a hash the catalog does not know is absent."""
        ...

    def blob_sizes(self, blob_hashes: Iterable[str]) -> dict[str, int]:
        """Stored sizes of these blobs; a blob the catalog does not list is absent."""
        ...

    def fetch_blob(self, blob_hash: str) -> bytes:
        """A blob's bytes from the object store (raises the store's own errors)."""
        ...
