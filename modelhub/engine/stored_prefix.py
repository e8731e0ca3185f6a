"""Which frozen prefix of a stored version has exact materialized features (progressive eval).

The feature store keys a prefix by the engine's content fingerprint (``PrefixTree.add_chain``:
the input fingerprint with the preprocessing, then per stage the ops, attributes and the digest
of every weight). Computing that key needs the prefix's weights, which progressive evaluation
must not read. So ``evaluate``, which holds those weights anyway, records an index next to the
features (``prefix_index.json`` in the store's root, beside ``profile.json``):

- ``prefixes``: identity -> engine node key, for every depth of every candidate's frozen prefix.
  The identity hashes what the catalog alone knows of a version: its graph hash, the depth, the
  input fingerprint (preprocessing, record shape and dtype) and the catalog tensor hash
  (blake2b-256 over dtype, shape and bytes) of every tensor of the prefix's stages. The key is
  computed by the engine's own functions on the weights whose catalog hashes are in the identity,
  so any version with the same graph and the same prefix tensors has the same prefix function.
- ``exact_chunks``: checksum -> key of every float32 chunk a run wrote with float32 arithmetic
  (CPU, or CUDA with TF32 off, and float32 matmul precision "highest"). Only such chunks are used.

``find_stored_prefix`` walks a version's stages from the deepest prefix down and returns the
first one whose stored float32 chunks cover the requested records, are all attested, and pass
the feature store's checksum verification on read. Anything else is a reason to start from the
raw inputs, which the caller reports. A lost or stale index only costs reuse, never exactness.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
from torch import nn

from ..netdef import rebuild
from ..progressive.access import VersionWeights
from .chain import Stage, split_into_stages
from .config import EvalConfig
from .data import DataView, Preprocessing
from .errors import FeatureStoreError
from .features import ChunkInfo, FeatureStore
from .fingerprint import input_fingerprint
from .selection import frozen_prefix_length, input_dtype
from .train import frozen_layers
from .tree import PrefixTree

INDEX = "prefix_index"
EXACT_DTYPE = "float32"


@dataclass(frozen=True)
class StoredStart:
    node: str                 # fx node of the version's network whose output the features are
    depth: int                # stages in the prefix
    key: str                  # the engine's prefix hash (feature-store folder key)
    features: torch.Tensor    # [len(idx), ...] exact float32 features of the requested records
    bytes_read: int           # feature bytes read from the store


@dataclass(frozen=True)
class NoStoredStart:
    """No stored prefix can be used: progressive evaluation starts from the raw inputs."""
    reason: str               # why, for the report (e.g. "stored features at flat do not cover ...")


def float32_exact(device: torch.device) -> bool:
    """Whether prefix outputs computed on ``device`` now are plain float32 arithmetic."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    return False


def _identity(graph_hash: str, depth: int, root: str, tensors: dict[str, str]) -> str:
    h = hashlib.blake2b(digest_size=20)
    h.update(json.dumps({"graph": graph_hash, "depth": depth, "root": root, "tensors": tensors},
                        sort_keys=True).encode())
    return h.hexdigest()


def _stage_tensor_names(stages: list[Stage]) -> list[list[str]]:
    """For each depth d >= 1, the network tensor names used by stages[:d]."""
    out: list[list[str]] = []
    names: set[str] = set()
    for s in stages:
        names |= set(s.tensor_names())
        out.append(sorted(names))
    return out


def _catalog_hashes(weights: VersionWeights, version_id: str) -> dict[str, str]:
    """Tensor name -> catalog tensor hash of a version's weights (its last snapshot)."""
    return dict(weights.weight_hashes(version_id))


def record_prefixes(weights: VersionWeights, store: FeatureStore,
                    members: Iterable[tuple[str, nn.Module, EvalConfig]], data: DataView, written: list[ChunkInfo],
                    exact: bool) -> None:
    """After an evaluate: index each candidate's frozen prefixes and attest the chunks it wrote.
    ``members``: (source version id, its checked-out network with weights, candidate config)."""
    index = store.load_meta(INDEX)
    prefixes: dict = dict(index.get("prefixes", {}))
    attested: dict = dict(index.get("exact_chunks", {}))
    record_shape = tuple(int(s) for s in data.x.shape[1:])
    # candidates of one source share its checked-out module: cut, hash and key it once
    groups: dict[tuple[int, Preprocessing], list[tuple[str, nn.Module, EvalConfig]]] = {}
    for version_id, module, cfg in members:
        groups.setdefault((id(module), Preprocessing.from_config(cfg)), []).append((version_id, module, cfg))
    for (_, pre), group in groups.items():
        version_id, module, _ = group[0]
        network = weights.stored_network(version_id)
        if network is None:
            continue
        graph_hash = network.graph_hash
        try:
            stages = split_into_stages(module, data.example(pre))
        except Exception:  # noqa: BLE001 - a network the engine cannot cut has no stored prefix
            continue
        depth = max(frozen_prefix_length(stages, cfg, frozen_layers(module, cfg)) for _, _, cfg in group)
        if depth == 0:
            continue
        root = input_fingerprint(pre.describe(), record_shape, input_dtype(data))
        keys = PrefixTree().add_chain(root, pre, stages[:depth])
        hashes = _catalog_hashes(weights, version_id)    # the checkout's tensors, as the catalog names them
        for d, names in enumerate(_stage_tensor_names(stages[:depth]), start=1):
            if any(n not in hashes for n in names):
                break
            ident = _identity(graph_hash, d, root, {n: hashes[n] for n in names})
            prefixes[ident] = {"key": keys[d], "stage": stages[d - 1].name}
    for info in written:
        if exact and info.dtype == EXACT_DTYPE:
            attested[info.checksum] = info.prefix
        else:
            attested.pop(info.checksum, None)
    store.save_meta(INDEX, {"prefixes": prefixes, "exact_chunks": attested})


def find_stored_prefix(weights: VersionWeights, store: FeatureStore, version_id: str, cfg: EvalConfig,
                       view: DataView, idx: np.ndarray) -> StoredStart | NoStoredStart:
    """The longest prefix of ``version_id``'s network with exact stored features of records
    ``idx`` of ``view``, or why none can be used."""
    if len(idx) == 0:
        return NoStoredStart("no records requested")
    index = store.load_meta(INDEX)
    prefixes, attested = index.get("prefixes", {}), index.get("exact_chunks", {})
    if not prefixes:
        return NoStoredStart("the feature store holds no indexed prefix "
                             "(run an evaluate with frozen layers on this dataset)")
    network = weights.stored_network(version_id)
    if network is None:
        return NoStoredStart("the version has no stored network graph")
    catalog_hashes = _catalog_hashes(weights, version_id)
    graph = network.graph
    if not graph.rebuildable:
        return NoStoredStart("the version's network cannot be rebuilt from its graph")
    pre = Preprocessing.from_config(cfg)
    try:
        gm = rebuild(graph)     # its weights are never read: cutting runs it on random ones
        stages = split_into_stages(gm, view.example(pre))
    except Exception as exc:  # noqa: BLE001 - no stages: nothing can have been stored
        return NoStoredStart(f"the network cannot be cut into stages ({type(exc).__name__})")
    root = input_fingerprint(pre.describe(), tuple(int(s) for s in view.x.shape[1:]), input_dtype(view))
    hi = int(np.max(idx)) + 1
    names_by_depth = _stage_tensor_names(stages)
    reason = f"no stored float32 features of this network's prefixes for dataset {view.meta.get('ref', view.name)}"
    reasons: list[str] = []     # why each indexed prefix was passed over, the deepest first
    for d in range(len(stages) - 1, 0, -1):     # the deepest prefix first; the last stage is the output
        names = names_by_depth[d - 1]
        if any(n not in catalog_hashes for n in names):
            continue
        entry = prefixes.get(_identity(network.graph_hash, d, root, {n: catalog_hashes[n] for n in names}))
        if entry is None or entry.get("stage") != stages[d - 1].name:
            continue
        key = entry["key"]
        cut = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == stages[d - 1].name]
        if len(cut) != 1 or stages[d - 1].packed_out:    # progressive starts from one float tensor
            continue
        if store.stored_records(key, view.uid, EXACT_DTYPE) < hi:
            reasons.append(f"stored features at {cut[0].name} do not cover the requested records")
            continue
        chunks = [c for c in store.chunks(key, view.uid, EXACT_DTYPE) if c.start < hi]
        if any(attested.get(c.checksum) != key for c in chunks):
            reasons.append(f"stored features at {cut[0].name} were not all computed with exact float32 "
                           "arithmetic (or by a run that did not record it)")
            continue
        before = store.bytes_read
        try:
            arr = store.read(key, view.uid, EXACT_DTYPE, 0, hi)     # verifies every chunk's checksum
        except FeatureStoreError as exc:
            reasons.append(f"stored features at {cut[0].name} failed verification: {exc}")
            continue
        if arr.dtype != np.float32 or arr.shape[0] != hi:
            reasons.append(f"stored features at {cut[0].name} are {arr.dtype} {list(arr.shape)}, not float32 of {hi} records")
            continue
        feats = torch.from_numpy(np.ascontiguousarray(arr[idx]))
        return StoredStart(cut[0].name, d, key, feats, store.bytes_read - before)
    return NoStoredStart(reasons[0] if reasons else reason)
