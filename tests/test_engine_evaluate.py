"""`evaluate` against a repository: commits with lineage, reuse across queries and dataset
versions (materializations recorded in the catalog), `dlv eval` and repo.eval."""
from __future__ import annotations

import json
import uuid
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from modelhub.engine import run_evaluate
from modelhub.engine.errors import ConfigError
from modelhub.engine.spec import Candidate, EvaluateSpec, KeepRule
from modelhub.repo.engine_access import engine_access

torch.set_num_threads(1)


def net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        flat=nn.Flatten(), fc1=nn.Linear(16, 8), relu2=nn.ReLU(), fc2=nn.Linear(8, 3)))


def add_data(repo, tmp_path, n, seed, name="blobs"):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 1, 4, 4)).astype(np.float32) * 0.5 + y[:, None, None, None]
    np.savez(tmp_path / f"{name}{seed}.npz", x=x, y=y)
    return repo.data_add(name, [tmp_path / f"{name}{seed}.npz"])


CONFIG = {"dataset": "blobs", "epochs": 2, "batch_size": 8, "base_lr": 0.05,
          "net": {"conv*": {"lr": 0}}}


def count_conv_records(module_calls: list[int]):
    def hook(m, inputs):
        module_calls.append(inputs[0].shape[0])
    return hook


def test_evaluate_commits_candidates_with_lineage_and_reuses_features(repo, tmp_path, monkeypatch):
    add_data(repo, tmp_path, 60, 0)
    src = repo.commit(net(), name="small", message="init")
    calls: list[int] = []
    real_checkout = repo.checkout

    def checkout_with_hook(ref, **kw):   # count records entering the frozen conv of every candidate
        co = real_checkout(ref, **kw)
        co.module.get_submodule("conv1").register_forward_pre_hook(count_conv_records(calls))
        return co
    monkeypatch.setattr(repo, "checkout", checkout_with_hook)

    spec = EvaluateSpec(candidates=tuple(Candidate(src.id, ((("base_lr",), lr),)) for lr in (0.1, 0.01, 0.001)),
                        base_config=CONFIG, query_text="evaluate test")
    result = run_evaluate(engine_access(repo), spec)
    assert len(result.committed) == 3 and result.reuse[0]["fused_groups"] == [3]
    assert sum(calls) == 3 * 32 + 60                      # profile sample, then each record once
    for c in result.candidates:
        info = repo.version(c.version_id)
        assert info.model == "small" and c.status == "finished" and info.parents == (src.id,)
        assert info.message == "evaluate test"
        co = real_checkout(c.version_id)
        assert co.hparams["base_lr"] in (0.1, 0.01, 0.001) and co.hparams["dataset"] == "blobs@1"
        torch.testing.assert_close(co.state_dict["conv1.weight"], src_weights(real_checkout, src.id))
        assert not torch.equal(co.state_dict["fc2.weight"], real_checkout(src.id).state_dict["fc2.weight"])
    with repo.catalog.read() as con:
        assert con.execute("SELECT count(*) FROM materializations").fetchone()[0] >= 1
        series = con.execute("SELECT count(*) FROM metrics WHERE version_id = ? AND name = 'val_loss'",
                             [result.committed[0]]).fetchone()[0]
    assert series == 2   # one validation per epoch

    calls.clear()
    run_evaluate(engine_access(repo), spec)               # a later query: no prefix work at all
    assert sum(calls) == 0
    add_data(repo, tmp_path, 25, 1)                       # a new labeling cycle
    calls.clear()
    again = run_evaluate(engine_access(repo), spec)
    assert sum(calls) == 25                               # only the new records pass the prefix
    assert {repo.version(v).model for v in again.committed} == {"small"}


def src_weights(checkout, vid):
    return checkout(vid).state_dict["conv1.weight"]


def test_keep_top_commits_only_the_kept(repo, tmp_path, monkeypatch):
    # the validation split hashes the dataset's random id: fix it, so the ranking is the same every run
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=7))
    add_data(repo, tmp_path, 60, 0)
    src = repo.commit(net(), name="small", message="init")
    spec = EvaluateSpec(candidates=tuple(Candidate(src.id, ((("base_lr",), lr),)) for lr in (0.1, 0.05, 1e-6)),
                        base_config=CONFIG, keep=KeepRule(1, "loss", 6))
    result = run_evaluate(engine_access(repo), spec)
    assert [c.status for c in result.candidates].count("finished") == 1
    assert len(result.committed) == 1
    assert next(c for c in result.candidates if "1e-06" in c.overrides).status == "pruned"


def test_dql_evaluate_runs_the_engine(repo, tmp_path):
    add_data(repo, tmp_path, 40, 0)
    repo.commit(net(), name="small", message="init")
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('dataset = "blobs"\nepochs = 1\nbatch_size = 8\nbase_lr = 0.05\n[net."conv*"]\nlr = 0\n')
    res = repo.query(f'evaluate m from small with config = "{cfg}" vary config.base_lr in [0.1, 0.01]')
    assert len(res.rows) == 2
    assert len(repo.log("small")) == 3


def test_missing_dataset_in_config_is_reported(repo, tmp_path):
    src = repo.commit(net(), name="small", message="init")
    spec = EvaluateSpec(candidates=(Candidate(src.id, ()),), base_config={"epochs": 1})
    with pytest.raises(ConfigError, match='names no dataset; add dataset = "NAME'):
        run_evaluate(engine_access(repo), spec)


def test_auto_lr_in_a_config_expands_to_freezing_prefixes(repo, tmp_path):
    add_data(repo, tmp_path, 40, 0)
    src = repo.commit(net(), name="small", message="init")
    spec = EvaluateSpec(candidates=(Candidate(src.id, ()),),
                        base_config={**CONFIG, "epochs": 1, "net": {"*": {"lr": "auto"}}})
    result = run_evaluate(engine_access(repo), spec)
    # layers with weights: conv1, fc1, fc2 -> freeze the first 3, 2, 1 or 0 of them
    assert sorted(c.frozen_stages for c in result.candidates) == [0, 4, 6, 7]


def test_repo_eval_and_cli_eval(repo, tmp_path, cli):
    add_data(repo, tmp_path, 40, 0)
    v = repo.commit(net(), name="small", message="init")
    report = repo.eval("small", data="blobs@1")
    assert report.version == "small@1" and report.dataset == "blobs@1" and report.split == "val"
    assert set(report.metrics) == {"loss", "accuracy"} and 0 <= report.metrics["accuracy"] <= 1
    full = repo.eval(v.id, data="blobs", split="all")
    assert full.n_records == 40
    code, out, err = cli("eval", "small", "--data", "blobs", "--json", "--repo", str(repo.root))
    assert code == 0, err
    assert json.loads(out)["metrics"]["loss"] == pytest.approx(report.metrics["loss"], rel=1e-6)
    code, _, err = cli("eval", "small", "--data", "nope", "--repo", str(repo.root))
    assert code != 0 and "no dataset named 'nope'" in err


def test_storage_budget_of_the_spec_overrides_the_config(repo, tmp_path):
    add_data(repo, tmp_path, 40, 0)
    src = repo.commit(net(), name="small", message="init")
    spec = EvaluateSpec(candidates=(Candidate(src.id, ()),), base_config=CONFIG, storage_budget="0")
    result = run_evaluate(engine_access(repo), spec)
    assert result.reuse[0]["materialized"] == [] and result.reuse[0]["records_recomputed"] > 0
    with repo.catalog.read() as con:
        assert con.execute("SELECT count(*) FROM materializations").fetchone()[0] == 0


def test_committed_candidates_keep_a_snapshot_per_epoch(repo, tmp_path):
    add_data(repo, tmp_path, 40, 0)
    src = repo.commit(net(), name="snap", message="init")
    spec = EvaluateSpec(candidates=(Candidate(src.id, ((("epochs",), 3),)),), base_config=CONFIG, query_text="snapshots")
    (vid,) = run_evaluate(engine_access(repo), spec).committed
    assert repo.desc(vid).n_snapshots == 3                     # epochs 1 and 2, then the final weights
    states = [repo.checkout(vid, snapshot=i, rebuild_module=False).state_dict for i in range(3)]
    for a, b in zip(states, states[1:]):
        assert torch.equal(a["conv1.weight"], b["conv1.weight"])   # frozen: the same tensor every epoch
        assert not torch.equal(a["fc2.weight"], b["fc2.weight"])   # trained: moves every epoch
    with repo.catalog.read() as con:
        steps = [r[0] for r in con.execute("SELECT step FROM snapshots WHERE version_id = ? ORDER BY snap", [vid]).fetchall()]
    assert steps == sorted(steps) and len(set(steps)) == 3


def test_storage_budget_reaches_the_engine_from_dql(repo, tmp_path, cli):
    add_data(repo, tmp_path, 40, 0)
    repo.commit(net(), name="budget", message="init")
    (tmp_path / "cfg.json").write_text(json.dumps(CONFIG))
    query = f'evaluate m from (select m where m.name == "budget") with config = "{tmp_path / "cfg.json"}" vary config.base_lr in [0.1, 0.01]'
    result = repo.query(query, storage_budget=0)
    assert len(result.committed) == 2
    assert result.spec.storage_budget == 0
    with repo.catalog.read() as con:   # a zero budget materializes nothing
        assert con.execute("SELECT count(*) FROM materializations").fetchone()[0] == 0
    code, out, err = cli("query", "--repo", str(repo.root), "--storage-budget", "lots", query)
    assert code == 2 and "size 'lots' is not understood" in err
