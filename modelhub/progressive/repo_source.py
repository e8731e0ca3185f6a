"""A repository version as a weight source, and ``evaluate_progressive(weights, ref, inputs)``.

Only catalog reads and object-store fetches, through the repository's
:class:`~modelhub.progressive.access.VersionWeights`: the network is rebuilt
from its stored graph *without* loading its weights, so the bytes a query
reads are exactly the segments it asked for.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping, Optional

import torch

from ..netdef import rebuild
from ..storage.tensors import manifest_blobs
from .access import StoredTensor, VersionWeights
from .api import evaluate_module
from .driver import ProgressiveConfig
from .errors import ProgressiveInputError
from .report import ProgressiveReport
from .source import ManifestSource, TensorEntry


def _entry(name: str, tensor_hash: str, stored: StoredTensor | None) -> TensorEntry:
    if stored is None:
        raise ProgressiveInputError(f"tensor {tensor_hash[:16]} ({name}) is referenced but not in the catalog; run `dlv fsck`")
    return TensorEntry(name, stored.manifest, stored.dtype, stored.shape, stored.nbytes, tensor_hash)


def version_source(weights: VersionWeights, version_id: str,
                   fetch: Optional[Callable[[str], bytes]] = None, snapshot: Optional[int] = None,
                   held: Optional[Callable[[str], bool]] = None) -> ManifestSource:
    """Every tensor of the version's latest snapshot (or of ``snapshot``), read lazily through the
    object store (``fetch``: another way to the same blobs, e.g. a FetchLedger shared by many versions;
    ``held``: which blobs that way already holds, so a tensor can start at the levels they cover)."""
    names = weights.weight_hashes(version_id) if snapshot is None else weights.weight_hashes(version_id, snapshot)
    stored = weights.stored_tensors(th for _, th in names)
    entries = {name: _entry(name, th, stored.get(th)) for name, th in names}
    sizes: dict[str, int] = {}

    def resolve_base(tensor_hash: str) -> TensorEntry:
        # delta bases belong to other versions: resolved on demand (their blobs count as read)
        return _entry("(delta base)", tensor_hash, weights.stored_tensors([tensor_hash]).get(tensor_hash))

    def blob_size(blob_hash: str) -> int:
        # asked only for manifests that record no sizes (format 1): the first ask reads the sizes
        # of every blob of the version's tensors at once, a delta base's blobs when they come up
        if blob_hash not in sizes:
            wanted = {blob_hash} | ({b for e in entries.values() for b in manifest_blobs(e.manifest)} - sizes.keys())
            sizes.update(weights.blob_sizes(wanted))
        if blob_hash not in sizes:      # not listed in the catalog: its length, uncounted
            sizes[blob_hash] = len(weights.fetch_blob(blob_hash))
        return sizes[blob_hash]

    return ManifestSource(entries, fetch or weights.fetch_blob, resolve_base, blob_size=blob_size, held=held)


def version_network(weights: VersionWeights, version_id: str) -> torch.fx.GraphModule:
    network = weights.stored_network(version_id)
    if network is None:
        raise ProgressiveInputError(f"version {version_id[:12]} has no stored network graph; commit it from an "
                                    "nn.Module so its graph is captured")
    if not network.graph.rebuildable:
        raise ProgressiveInputError(f"version {version_id[:12]}'s network cannot be rebuilt from its graph; "
                                    "evaluate it in Python with evaluate_module")
    return rebuild(network.graph)


def evaluate_progressive(weights: VersionWeights, ref: str, inputs, top_k: int = 1, *,
                         config: Optional[ProgressiveConfig] = None, fallback: bool = True, compare: bool = False,
                         given: Optional[Mapping[str, torch.Tensor]] = None) -> ProgressiveReport:
    """Progressive top-k labels of version ``ref`` on preprocessed ``inputs`` [N, ...].

    ``weights``: the repository's reads (``modelhub.repo.engine_access.engine_access(repo)``)."""
    version_id = weights.resolve(ref)
    gm = version_network(weights, version_id)
    report = evaluate_module(gm, inputs, top_k=top_k, source=version_source(weights, version_id), config=config,
                             fallback=fallback, compare=compare, given=given)
    return replace(report, version=ref)
