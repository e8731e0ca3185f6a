"""The engine's narrow view of a repository: check out, commit, load a dataset, index features.

The engine sits below the repository layer: it never imports modelhub.repo
and runs no SQL. ``evaluate`` and ``dlv eval`` receive an object with the
operations below; ``modelhub/repo/engine_access.py`` implements them on a
``Repo`` (``engine_access(repo)``), and tests may hand in any object that has
them. It extends progressive evaluation's :class:`VersionWeights` (the
network and the archived weights of a version, read without loading them),
which finds stored prefix features for ``dlv eval --progressive``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from torch import nn

from ..netdef import Graph
from ..progressive.access import StoredNetwork, StoredTensor, VersionWeights
from .data import DataView
from .features import ChunkInfo

__all__ = ["CommittedVersion", "RepositoryAccess", "SourceVersion", "StoredNetwork", "StoredTensor",
           "VersionWeights"]


@dataclass(frozen=True)
class SourceVersion:
    """A checked-out version the engine trains or evaluates."""
    id: str
    ref: str                      # NAME@N
    model: str                    # the model name; evaluate commits its results under it
    module: nn.Module | None      # rebuilt from the stored graph with the weights; None: not rebuildable
    graph: Graph | None


@dataclass(frozen=True)
class CommittedVersion:
    """A version the engine committed."""
    id: str
    ref: str                      # NAME@N


class RepositoryAccess(VersionWeights, Protocol):
    """Everything `evaluate` and `dlv eval` do with a repository."""

    @property
    def features_root(self) -> Path:
        """The repository's own feature store folder (.dlv/features)."""
        ...

    def checkout(self, ref: str) -> SourceVersion:
        """Version ``ref`` with its network rebuilt and its weights loaded."""
        ...

    def commit(self, model: nn.Module, *, name: str, parent: str, message: str, hparams: Mapping[str, Any],
               metrics: Mapping[str, Any], graph: Graph | None, snapshots: Sequence[Mapping[str, Any]],
               snapshot_steps: Sequence[int], hot_copy: bool) -> CommittedVersion:
        """Commit a trained network as a new version of ``name`` (see ``Repo.commit``)."""
        ...

    def dataset(self, ref: str) -> DataView:
        """The records of dataset ``NAME`` (latest) or ``NAME@N``."""
        ...

    def record_feature_chunk(self, chunk: ChunkInfo, path: str) -> None:
        """List a feature chunk the engine wrote in the catalog's feature index (its own transaction);
        ``path``: relative to :attr:`features_root`, or the chunk's full URL for another store."""
        ...
