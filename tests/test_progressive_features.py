"""Progressive eval over a frozen prefix's stored features (issue 6 x engine feature store):
`repo.eval(..., progressive=True)` starts from the exact float32 features an `evaluate` with
frozen layers materialized, reads only the head's tensors, and says so; otherwise it starts from
the raw inputs and says why."""
from __future__ import annotations

import json
import re
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from modelhub.engine import run_evaluate
from modelhub.engine.features import FeatureStore
from modelhub.engine.spec import Candidate, EvaluateSpec
from modelhub.repo.engine_access import engine_access
from modelhub.storage.tensors import manifest_blobs

torch.set_num_threads(1)

CONFIG = {"dataset": "blobs", "epochs": 3, "batch_size": 8, "base_lr": 0.05, "net": {"conv*": {"lr": 0}}}


def net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        flat=nn.Flatten(), fc1=nn.Linear(16, 8), relu2=nn.ReLU(), fc2=nn.Linear(8, 3)))


@pytest.fixture
def trained(repo, tmp_path):
    """An evaluate with the conv frozen: stores the prefix's features; returns the committed ref."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    x = rng.standard_normal((60, 1, 4, 4)).astype(np.float32) * 0.5 + y[:, None, None, None]
    np.savez(tmp_path / "blobs.npz", x=x, y=y)
    repo.data_add("blobs", [tmp_path / "blobs.npz"])
    src = repo.commit(net(), name="small", message="init")
    result = run_evaluate(engine_access(repo), EvaluateSpec(candidates=(Candidate(src.id, ()),), base_config=CONFIG))
    assert len(result.committed) == 1 and result.reuse[0]["materialized"], result.reuse
    with repo.catalog.read() as con:
        assert con.execute("SELECT count(*) FROM materializations WHERE dtype = 'float32'").fetchone()[0] > 0
    return result.candidates[0].ref


def blobs_of(repo, ref: str) -> dict[str, set[str]]:
    with repo.catalog.read() as con:
        rows = con.execute("SELECT s.name, d.encoding FROM snapshot_tensors s JOIN tensor_data d USING (tensor_hash) "
                           "WHERE s.version_id = ?", [repo.resolve(ref)]).fetchall()
    return {name: set(manifest_blobs(json.loads(enc))) for name, enc in rows}


def fetched_by(repo, monkeypatch) -> list[str]:
    seen: list[str] = []
    real = repo.store.get

    def get(h, *a, **kw):
        seen.append(h)
        return real(h, *a, **kw)
    monkeypatch.setattr(repo.store, "get", get)
    return seen


def full_precision_labels(repo, ref: str, top_k: int) -> np.ndarray:
    view = repo.dataset("blobs")
    module = repo.checkout(ref).module.eval()
    with torch.no_grad():
        out = module(torch.from_numpy(np.ascontiguousarray(view.x, dtype=np.float32)))
    return torch.topk(out, top_k, dim=1).indices.numpy()


def test_progressive_eval_starts_from_stored_features_and_reads_only_the_head(repo, trained, monkeypatch):
    blobs = blobs_of(repo, trained)
    head = set().union(*(blobs[n] for n in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")))
    # blobs are content-addressed: a small segment (e.g. the signs of a bias) can be the very
    # same blob in the prefix and the head, so only blobs the prefix alone needs must stay unread
    prefix = (blobs["conv1.weight"] | blobs["conv1.bias"]) - head
    assert prefix
    seen = fetched_by(repo, monkeypatch)
    rep = repo.eval(trained, data="blobs", split="all", progressive=True, top_k=2, compare=True)
    # (1) started from the stored features of the deepest frozen stage
    assert rep.head_from == "flat" and rep.stored_features is True
    assert "4 stage(s), 60 records" in rep.stored_features_note and rep.feature_bytes_read == 60 * 16 * 4
    # (2) not one blob of the prefix's tensors was fetched (the comparison included); the head's were
    with repo.catalog.read() as con:
        records = {r[0] for r in con.execute("SELECT blob_hash FROM dataset_chunks").fetchall()}
    assert head <= set(seen) and not prefix & set(seen) and set(seen) - records <= head
    assert rep.bytes_read <= rep.bytes_total == sum(len(repo.store.get(b)) for b in head)
    # (3) the labels of the full-precision network on every record (top-k: a set per record)
    np.testing.assert_array_equal(np.sort(rep.labels, 1), np.sort(full_precision_labels(repo, trained, 2), 1))
    assert rep.agreement == 1.0
    top1 = repo.eval(trained, data="blobs", split="all", progressive=True, compare=False)
    assert top1.stored_features and top1.labels.dtype == np.int64
    np.testing.assert_array_equal(top1.labels, full_precision_labels(repo, trained, 1))

    seen.clear()
    raw = repo.eval(trained, data="blobs", split="all", progressive=True, top_k=2, use_stored_features=False)
    assert raw.head_from is None and raw.stored_features is False and "disabled" in raw.stored_features_note
    assert prefix & set(seen) and raw.bytes_total > rep.bytes_total
    np.testing.assert_array_equal(np.sort(raw.labels, 1), np.sort(rep.labels, 1))


def test_after_gc_features_it_falls_back_to_the_raw_inputs_and_says_so(repo, trained, cli):
    before = repo.eval(trained, data="blobs", split="all", progressive=True, compare=False)
    code, out, err = cli("eval", trained, "--data", "blobs", "--split", "all", "--progressive", "--no-compare",
                         "--repo", str(repo.root))
    assert code == 0, err
    assert re.search(r"start\s+node flat \(exact features\)", out) and re.search(r"features from the store\s+yes \(", out), out
    code, out, err = cli("eval", trained, "--data", "blobs", "--progressive", "--no-stored-features", "--json",
                         "--repo", str(repo.root))
    got = json.loads(out)
    assert code == 0 and got["head_from"] is None and got["stored_features"] is False, err

    code, out, err = cli("gc", "--features", "--repo", str(repo.root))
    assert code == 0, err
    after = repo.eval(trained, data="blobs", split="all", progressive=True, compare=False)
    assert after.head_from is None and after.stored_features is False
    assert "do not cover" in after.stored_features_note or "no stored" in after.stored_features_note
    np.testing.assert_array_equal(after.labels, before.labels)
    code, out, err = cli("eval", trained, "--data", "blobs", "--split", "all", "--progressive", "--json",
                         "--repo", str(repo.root))
    got = json.loads(out)
    assert code == 0 and got["stored_features"] is False and got["stored_features_note"], err
    assert got["labels"] == before.labels.tolist()


def test_other_weights_or_preprocessing_do_not_match(repo, trained, tmp_path):
    # same graph, a different conv: its prefix hash differs, nothing stored for it
    other = repo.commit(net(seed=1), name="other", message="different backbone")
    rep = repo.eval(other.ref, data="blobs", split="all", progressive=True, compare=False)
    assert rep.head_from is None and "no stored float32 features" in rep.stored_features_note
    # normalization is part of the prefix's input fingerprint
    (tmp_path / "norm.json").write_text(json.dumps({"normalize": {"mean": [0.5], "std": [2.0]}}))
    rep = repo.eval(trained, data="blobs", split="all", progressive=True, compare=False,
                    config=str(tmp_path / "norm.json"))
    assert rep.head_from is None and rep.stored_features is False


def test_unattested_or_corrupt_chunks_are_not_used(repo, trained):
    store = FeatureStore(repo.paths.features)
    index = store.load_meta("prefix_index")
    attested = dict(index["exact_chunks"])
    # a chunk no exact float32 run vouches for (e.g. written on a GPU with TF32) is not used
    store.save_meta("prefix_index", {**index, "exact_chunks": {}})
    rep = repo.eval(trained, data="blobs", split="all", progressive=True, compare=False)
    assert rep.head_from is None and "exact float32" in rep.stored_features_note
    # a chunk whose bytes no longer match its checksum fails the store's verification on read
    store.save_meta("prefix_index", {**index, "exact_chunks": attested})
    chunks = sorted(repo.paths.features.rglob("r*.npy"))
    assert len(chunks) == 1           # the planner stored the head's input (flat) only
    chunk = chunks[0]
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0xFF
    chunk.write_bytes(bytes(data))
    rep = repo.eval(trained, data="blobs", split="all", progressive=True, compare=False)
    assert rep.head_from is None and "failed verification" in rep.stored_features_note
    np.testing.assert_array_equal(rep.labels, full_precision_labels(repo, trained, 1))


def test_runs_without_exact_float32_arithmetic_attest_nothing(repo, tmp_path, monkeypatch):
    import modelhub.engine.evaluate as ev
    monkeypatch.setattr(ev, "float32_exact", lambda device: False)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 40)
    np.savez(tmp_path / "b.npz", x=(rng.standard_normal((40, 1, 4, 4)) + y[:, None, None, None]).astype(np.float32), y=y)
    repo.data_add("blobs", [tmp_path / "b.npz"])
    src = repo.commit(net(), name="small", message="init")
    result = run_evaluate(engine_access(repo), EvaluateSpec(candidates=(Candidate(src.id, ()),), base_config=CONFIG))
    assert result.reuse[0]["materialized"]
    rep = repo.eval(result.candidates[0].ref, data="blobs", split="all", progressive=True, compare=False)
    assert rep.head_from is None and "exact float32" in rep.stored_features_note


def test_head_without_a_bound_rule_runs_at_full_precision_from_the_raw_inputs(repo, tmp_path):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 40)
    np.savez(tmp_path / "g.npz", x=(rng.standard_normal((40, 1, 4, 4)) + y[:, None, None, None]).astype(np.float32), y=y)
    repo.data_add("blobs", [tmp_path / "g.npz"])
    model = net()
    model.relu2 = nn.GELU()                       # in the head: refused by the bound rules
    src = repo.commit(model, name="gelu", message="init")
    ref = run_evaluate(engine_access(repo), EvaluateSpec(candidates=(Candidate(src.id, ()),), base_config=CONFIG)).candidates[0].ref
    rep = repo.eval(ref, data="blobs", split="all", progressive=True)
    assert rep.fallback and "GELU" in rep.fallback and rep.head_from is None and rep.stored_features is False
    assert rep.stored_features_note.startswith("stored features at flat not used") and rep.agreement == 1.0
    np.testing.assert_array_equal(rep.labels, full_precision_labels(repo, ref, 1))
