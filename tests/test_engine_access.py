"""The engine's narrow interfaces (issue 14): the repository adapter behind RepositoryAccess
(modelhub/repo/engine_access.py) reads what the catalog holds, and every implementation of an
interface has its methods with the interface's parameters."""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from helpers import tiny_cnn
from modelhub.catalog.features import forget_all
from modelhub.engine.access import RepositoryAccess
from modelhub.engine.config import build_config
from modelhub.engine.data import DataView
from modelhub.engine.executor import Executor, LocalExecutor
from modelhub.engine.features import ChunkInfo, FeatureStore
from modelhub.engine.stored_prefix import NoStoredStart, find_stored_prefix
from modelhub.repo.engine_access import RepoEngineAccess, engine_access
from modelhub.storage.tensors import manifest_blobs


def members(protocol: type) -> dict[str, inspect.Signature | None]:
    """The protocol's methods (their signatures) and properties (None)."""
    out: dict[str, inspect.Signature | None] = {}
    for cls in protocol.__mro__:
        if cls is object or not getattr(cls, "_is_protocol", False):
            continue
        for name, value in vars(cls).items():
            if name.startswith("_") or name in out:
                continue
            out[name] = None if isinstance(value, property) else inspect.signature(value)
    return out


def assert_implements(impl: type, protocol: type) -> None:
    for name, sig in members(protocol).items():
        assert hasattr(impl, name), f"{impl.__name__} lacks {name}"
        if sig is not None:
            got = inspect.signature(getattr(impl, name))
            assert list(got.parameters) == list(sig.parameters), (impl.__name__, name)


def test_the_adapter_and_the_executors_implement_their_interfaces():
    assert {"checkout", "commit", "dataset", "record_feature_chunk", "features_root", "resolve",
            "stored_network", "weight_hashes", "stored_tensors", "blob_sizes", "fetch_blob"} <= set(
        members(RepositoryAccess))
    assert_implements(RepoEngineAccess, RepositoryAccess)
    assert_implements(LocalExecutor, Executor)
    ray_backend = pytest.importorskip("modelhub.engine.ray_backend")
    assert_implements(ray_backend.RayExecutor, Executor)


def test_the_adapter_reads_what_the_catalog_holds(repo):
    model = tiny_cnn(0)
    info = repo.commit(model, name="lenet", message="init")
    access = engine_access(repo)
    assert access.resolve("lenet") == info.id
    network = access.stored_network(info.id)
    with repo.catalog.read() as con:
        graph_hash = con.execute("SELECT graph_hash FROM versions WHERE id = ?", [info.id]).fetchone()[0]
    assert network is not None and network.graph_hash == graph_hash   # feature-index identities use it
    names = access.weight_hashes(info.id)
    assert [n for n, _ in names] == list(model.state_dict())
    stored = access.stored_tensors([h for _, h in names] + ["0" * 64])
    assert set(stored) == {h for _, h in names}                      # an unknown hash is absent
    name, first = names[0]
    entry = stored[first]
    assert entry.shape == tuple(model.state_dict()[name].shape) and entry.dtype == "float32"
    blobs = manifest_blobs(entry.manifest)
    sizes = access.blob_sizes(blobs + ["f" * 64])
    assert set(sizes) == set(blobs) and all(sizes[b] == len(access.fetch_blob(b)) for b in blobs)
    co = access.checkout("lenet")
    assert (co.id, co.ref, co.model) == (info.id, "lenet@1", "lenet") and co.module is not None

    state_only = repo.commit(model.state_dict(), name="weights", message="no graph", parent=())
    assert access.stored_network(state_only.id) is None


def test_feature_chunks_are_indexed_in_the_catalog_and_forgotten_by_gc(repo):
    access = engine_access(repo)
    root = access.features_root
    assert root == Path(repo.paths.features)
    chunk = ChunkInfo("p" * 40, "uid", "float32", 0, 8, (8, 4), 128, "c" * 64, root / "ab" / "x" / "r0.npy")
    access.record_feature_chunk(chunk, "ab/x/r0.npy")
    access.record_feature_chunk(chunk, "ab/x/r0.npy")          # written again: one row
    with repo.catalog.read() as con:
        rows = con.execute("SELECT prefix_hash, start_record, end_record, path, nbytes FROM materializations").fetchall()
    assert rows == [("p" * 40, 0, 8, "ab/x/r0.npy", 128)]
    with repo.catalog.write() as con:
        forget_all(con)
    with repo.catalog.read() as con:
        assert con.execute("SELECT count(*) FROM materializations").fetchone()[0] == 0


def test_no_stored_prefix_is_a_typed_result_with_its_reason(repo):
    info = repo.commit(tiny_cnn(0), name="lenet", message="init")
    view = DataView("uid", 1, np.zeros((4, 1, 8, 8), np.float32), np.zeros(4, np.int64))
    store = FeatureStore(repo.paths.features)
    found = find_stored_prefix(engine_access(repo), store, info.id, build_config({"epochs": 1}), view, np.arange(4))
    assert isinstance(found, NoStoredStart) and "holds no indexed prefix" in found.reason
    none = find_stored_prefix(engine_access(repo), store, info.id, build_config({"epochs": 1}), view, np.arange(0))
    assert none == NoStoredStart("no records requested")
