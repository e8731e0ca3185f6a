"""The Ray backend (issue 9): the same plan, the same feature files and the same trained heads
as the local backend, bit for bit; a worker killed mid-extraction loses and doubles nothing;
the backend is chosen by argument, config key or DLV_BACKEND and Ray stays optional."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import bits
from modelhub.engine.backend import BackendOptions, FaultInjection, open_executor, resolve_backend
from modelhub.engine.chain import split_into_stages
from modelhub.engine.config import build_config
from modelhub.engine.data import Preprocessing
from modelhub.engine.errors import BackendError, ConfigError
from modelhub.engine.extract import ChunkWriter, ExtractionStats, extract
from modelhub.engine.evaluate import run_evaluate
from modelhub.engine.features import FeatureStore
from modelhub.engine.fingerprint import input_fingerprint
from modelhub.engine.fsstore import open_feature_store
from modelhub.engine.selection import CandidateModel, run_selection
from modelhub.engine.spec import Candidate, EvaluateSpec, KeepRule
from modelhub.engine.tree import PrefixTree
from modelhub.repo.engine_access import engine_access
from test_engine_evaluate import add_data, net
from test_engine_reuse import FREEZE, backbone, candidate, data

ray = pytest.importorskip("ray")

torch.set_num_threads(1)
SMALL = {"extraction_batch_size": 16, "chunk_records": 32}     # 120 records -> 4 chunks per node


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def workload() -> list[CandidateModel]:
    """Three heads on the frozen backbone (one with dropout) and one that also tunes the
    last conv: two fused groups, so two training tasks."""
    bb = backbone()
    cands = [CandidateModel(f"c{i}", candidate(bb, i, hidden=4 + 4 * i, dropout=0.3 if i == 1 else 0.0),
                            build_config({**FREEZE, "base_lr": lr})) for i, lr in enumerate((0.1, 0.05, 0.01))]
    ft = {**FREEZE, "base_lr": 0.05, "seed": 7, "net": {"backbone": {"lr": 0}, "backbone.3": {"lr": 1}}}
    cands.append(CandidateModel("ft", candidate(bb, 9), build_config(ft)))
    return cands


def chunk_files(root: Path) -> dict[str, bytes]:
    """Every chunk file (.npy and manifest) by its path under the store root."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("r*")) if p.is_file()}


def assert_same_training(a, b) -> None:
    assert [o.cid for o in a.outcomes] == [o.cid for o in b.outcomes]
    for x, y in zip(a.outcomes, b.outcomes):
        assert (x.status, x.steps, x.epochs, x.boundary) == (y.status, y.steps, y.epochs, y.boundary)
        assert [(n, s, v.hex()) for n, s, v in x.series] == [(n, s, v.hex()) for n, s, v in y.series]
        sx, sy = x.model.state_dict(), y.model.state_dict()
        assert list(sx) == list(sy)
        for k in sx:
            assert torch.equal(bits(sx[k]), bits(sy[k])), (x.cid, k)
        assert [s for s, _ in x.snapshots] == [s for s, _ in y.snapshots]
        for (_, tx), (_, ty) in zip(x.snapshots, y.snapshots):   # epoch snapshots, in tensor order
            assert len(tx) == len(ty)
            for vx, vy in zip(tx.values(), ty.values()):
                assert torch.equal(bits(vx), bits(vy))


def test_ray_plan_features_and_heads_equal_the_local_backend_bit_for_bit(cluster, tmp_path):
    d = data(120)
    keep = KeepRule(3, "loss", 8)   # prune one after 8 steps (mid-epoch): two remote phases per group
    local_reg: list = []
    local_store = FeatureStore(tmp_path / "local", on_write=local_reg.append)
    local = run_selection(workload(), d, store=local_store, keep=keep, **SMALL)
    assert local.plan.materialize, "the workload must store features for this test to mean anything"

    # the planner reads the same measurements (timings vary run to run), so it must decide the same;
    # the Ray side writes through fsspec to a URL every worker reads
    (tmp_path / "shared").mkdir()
    for name in ("profile.json", "disk.json"):
        shutil.copy(tmp_path / "local" / name, tmp_path / "shared" / name)
    ray_reg: list = []
    ray_store = open_feature_store((tmp_path / "shared").as_uri(), on_write=ray_reg.append)
    remote = run_selection(workload(), d, store=ray_store, keep=keep, backend="ray", **SMALL)

    assert remote.plan.materialize == local.plan.materialize and remote.plan.decisions == local.plan.decisions
    assert remote.reuse.fused_groups == local.reuse.fused_groups == (3, 1)
    assert remote.reuse.backend == "ray" and local.reuse.backend == "local"
    files = chunk_files(tmp_path / "local")
    assert len(files) == 2 * 4 * len(local.plan.materialize)          # .npy + manifest, 4 chunks per node
    assert chunk_files(tmp_path / "shared") == files                   # same names, same bytes
    assert sorted((i.prefix, i.start, i.end, i.checksum) for i in ray_reg) == \
        sorted((i.prefix, i.start, i.end, i.checksum) for i in local_reg)
    assert len(ray_reg) == len({(i.prefix, i.start) for i in ray_reg})   # registered once each
    assert_same_training(local, remote)
    assert {o.status for o in remote.outcomes} == {"finished", "pruned"}

    roles = {w["role"] for w in remote.reuse.workers}
    assert roles == {"extract", "train"}
    extract = [w for w in remote.reuse.workers if w["role"] == "extract"]
    assert sum(w["records"] for w in extract) == 120 and sum(w["chunks"] for w in extract) == 4
    assert sum(w["bytes_read"] for w in extract) == d.x.nbytes         # each worker read only its chunks' records


def test_killed_worker_neither_loses_nor_duplicates_feature_records(cluster, tmp_path):
    d = data(120)
    tree = PrefixTree()
    pre = Preprocessing()
    keys = tree.add_chain(input_fingerprint(pre.describe(), (1, 8, 8), "float32"), pre,
                          split_into_stages(backbone())[:4])
    targets = set(keys[2:])                       # three nodes: three chunk files per record range
    local_store = FeatureStore(tmp_path / "local")
    writer = ChunkWriter(local_store, d.uid, "float32", 32)
    extract(tree, targets, d, 0, 120, sink=writer, batch_size=16, device=torch.device("cpu"),
            stats=ExtractionStats())
    writer.close()

    marker = tmp_path / "killed"
    registered: list = []
    store = FeatureStore(tmp_path / "ray", on_write=registered.append)
    # the actor handling records [32, 64) dies (os._exit) after writing the first of that
    # range's chunk files, the first time only; Ray restarts it and retries the range
    executor = open_executor(BackendOptions("ray", workers=2, fault=FaultInjection(32, str(marker), after_writes=1)))
    stats = ExtractionStats()
    executor.extract(tree, targets, d, 0, 120, store=store, dtype="float32", batch_size=16, chunk_records=32,
                     stats=stats, available={})
    assert marker.exists(), "the injected kill did not happen"

    keys_registered = [(i.prefix, i.start, i.end) for i in registered]
    assert len(keys_registered) == len(set(keys_registered)) == 3 * 4     # every chunk registered exactly once
    assert sum(stats.stage_records.values()) == 4 * 120                   # every record through each stage once
    for key in targets:
        chunks = store.chunks(key, d.uid, "float32")
        assert [(c.start, c.end) for c in chunks] == [(0, 32), (32, 64), (64, 96), (96, 120)]
        got, want = store.read(key, d.uid, "float32", 0, 120), local_store.read(key, d.uid, "float32", 0, 120)
        assert got.shape[0] == 120
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert not [p for p in (tmp_path / "ray").rglob(".tmp-*")]        # no half-written file left behind
    assert chunk_files(tmp_path / "ray") == chunk_files(tmp_path / "local")


def test_repository_query_and_eval_on_ray_commit_what_local_commits(cluster, repo, cli, tmp_path):
    add_data(repo, tmp_path, 60, 0)
    src = repo.commit(net(), name="small", message="init")
    cfg = tmp_path / "eval.json"
    cfg.write_text(json.dumps({"dataset": "blobs", "epochs": 2, "batch_size": 8, "net": {"conv*": {"lr": 0}},
                               "storage_budget": "unlimited"}))
    query = f'evaluate m from small with config = "{cfg}" vary config.base_lr in [0.1, 0.01]'
    code, out, err = cli("query", "--backend", "ray", "--json", query)
    assert code == 0, err
    assert "Traceback" not in err
    on_ray = json.loads(out)
    with repo.catalog.read() as con:
        rows = con.execute("SELECT prefix_hash, start_record FROM materializations").fetchall()
    on_disk = list(Path(repo.paths.features).rglob("r*.json"))
    assert rows and len(rows) == len(set(rows)) == len(on_disk)       # the driver registered each chunk once

    # the same candidates on the local backend (a query `from small` would now also find the new versions)
    spec = EvaluateSpec(candidates=tuple(Candidate(src.id, ((("base_lr",), lr),)) for lr in (0.1, 0.01)),
                        config_source=str(cfg))
    local = run_evaluate(engine_access(repo), spec, backend="local")
    assert len(local.committed) == len(on_ray["committed"]) == 2
    for vr, vl in zip(on_ray["committed"], local.committed):
        a, b = repo.checkout(vr).state_dict, repo.checkout(vl).state_dict
        assert all(torch.equal(bits(a[k]), bits(b[k])) for k in a)
    assert [repo.version(v).parents for v in on_ray["committed"]] == [(src.id,), (src.id,)]

    code, out, err = cli("eval", local.committed[0], "--data", "blobs", "--split", "all", "--backend", "ray", "--json")
    assert code == 0, err
    local_report = repo.eval(local.committed[0], data="blobs", split="all", backend="local")
    assert {k: v.hex() for k, v in json.loads(out)["metrics"].items()} == \
        {k: v.hex() for k, v in local_report.metrics.items()}


def test_backend_choice_argument_config_key_and_environment(monkeypatch):
    monkeypatch.delenv("DLV_BACKEND", raising=False)
    assert resolve_backend().name == "local"
    monkeypatch.setenv("DLV_BACKEND", "ray")
    assert resolve_backend().name == "ray"
    assert resolve_backend(config_value="local").name == "local"         # the config key beats the variable
    assert resolve_backend("ray", config_value="local", address="ray://h:10001").address == "ray://h:10001"
    assert build_config({"epochs": 1, "backend": "ray", "ray_address": "h:6379"}).backend == "ray"
    with pytest.raises(ConfigError, match="unknown backend 'spark'; use one of local, ray"):
        resolve_backend("spark")
    with pytest.raises(ConfigError, match="backend must be local or ray, got 'dask'"):
        build_config({"epochs": 1, "backend": "dask"})


def test_missing_ray_is_an_engine_error_that_says_how_to_install_it(monkeypatch, repo, cli, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)        # `import ray` now raises ImportError
    with pytest.raises(BackendError, match=r"pip install 'modelhub\[ray\]'"):
        run_selection(workload()[:1], data(40), store=None, backend="ray")
    add_data(repo, tmp_path, 30, 0)
    repo.commit(net(), name="small", message="init")
    code, out, err = cli("eval", "small", "--data", "blobs", "--backend", "ray")
    assert code == 9 and "pip install 'modelhub[ray]'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_importing_modelhub_and_the_local_backend_never_imports_ray():
    code = ("import sys, modelhub, modelhub.engine, modelhub.cli; "
            "from modelhub.engine.selection import run_selection; "
            "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
