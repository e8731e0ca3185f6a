"""Engine reuse: frozen-prefix work happens once per record across epochs, candidates,
queries and dataset versions; trained heads equal plain training; keep-top prunes."""
from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from modelhub.engine.config import build_config
from modelhub.engine.data import DataView
from modelhub.engine.features import FeatureStore
from modelhub.engine.selection import CandidateModel, run_selection
from modelhub.engine.spec import KeepRule
from modelhub.engine.errors import FeatureStoreError

torch.set_num_threads(1)


class Counter:
    """Counts records entering the first frozen conv. The hook is a plain function:
    deepcopy keeps functions as they are, so copies of the module still count here."""

    def __init__(self) -> None:
        self.records = 0

        def hook(module, inputs):
            self.records += inputs[0].shape[0]
        self.hook = hook


def backbone(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten())


def candidate(bb: nn.Sequential, head_seed: int, hidden: int = 8, dropout: float = 0.0) -> nn.Sequential:
    torch.manual_seed(100 + head_seed)
    head = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 3))
    return nn.Sequential(OrderedDict(backbone=copy.deepcopy(bb), head=head))


def data(n: int = 120, seed: int = 0, uid: str = "ds-1") -> DataView:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].mean(axis=(1, 2)) > 0).astype(np.int64) + (x[:, 0, 4:].mean(axis=(1, 2)) > 0)
    return DataView(uid, 1, x, y)


FREEZE = {"net": {"backbone": {"lr": 0}}, "epochs": 3, "batch_size": 16}


def three_candidates(bb, counter=None):
    if counter is not None:
        bb[0].register_forward_pre_hook(counter.hook)
    return [CandidateModel(f"c{i}", candidate(bb, i, hidden=4 + 4 * i),
                           build_config({**FREEZE, "base_lr": lr})) for i, lr in enumerate((0.1, 0.05, 0.01))]


def test_prefix_runs_once_per_record_across_epochs_candidates_queries_and_versions(tmp_path):
    counter = Counter()
    cands = three_candidates(backbone(), counter)
    store = FeatureStore(tmp_path / "features")
    d1 = data(120)
    r1 = run_selection(cands, d1, store=store)
    # profiling times a 32-record sample (warm-up + 2 runs); then each record passes exactly once
    profiled = 3 * 32
    assert counter.records == 120 + profiled
    assert r1.reuse.fused_groups == (3,)
    assert r1.reuse.prefix_nodes == 6          # one shared chain, not three
    assert r1.reuse.candidate_prefix_stages == 18

    before = counter.records
    r2 = run_selection(cands, d1, store=store)  # a later query: nothing recomputed, timings cached
    assert counter.records == before
    assert r2.reuse.records_extracted == 0 and r2.reuse.records_preexisting > 0

    bigger = DataView("ds-1", 2, np.concatenate([d1.x, data(30, seed=5).x]),
                      np.concatenate([d1.y, data(30, seed=5).y]))
    before = counter.records
    run_selection(cands, bigger, store=store)   # a new labeling cycle: only new records
    assert counter.records - before == 30


def test_identical_prefix_with_different_layer_names_is_shared(tmp_path):
    bb = backbone()
    renamed = nn.Sequential(OrderedDict((f"layer_{i}", copy.deepcopy(m)) for i, m in enumerate(bb)))
    other = nn.Sequential(OrderedDict(trunk=renamed, head=candidate(bb, 0).head))
    cfg_a = build_config({**FREEZE, "base_lr": 0.1})
    cfg_b = build_config({**FREEZE, "base_lr": 0.1, "net": {"trunk": {"lr": 0}}})
    r = run_selection([CandidateModel("a", candidate(bb, 0), cfg_a), CandidateModel("b", other, cfg_b)],
                      data(), store=FeatureStore(tmp_path))
    assert r.reuse.prefix_nodes == 6 and r.reuse.fused_groups == (2,)
    changed = copy.deepcopy(other)
    with torch.no_grad():
        changed.trunk.layer_3.weight.add_(1e-3)   # different weights: only the first 3 stages are shared
    r = run_selection([CandidateModel("a", candidate(bb, 0), cfg_a), CandidateModel("b", changed, cfg_b)],
                      data(), store=FeatureStore(tmp_path / "2"))
    assert r.reuse.prefix_nodes == 9


def plain_train(model: nn.Sequential, cfg, d: DataView, device: str = "cpu") -> nn.Sequential:
    """Textbook loop: full forward each step, frozen layers in eval mode, same shuffling and seed;
    on ``device``, with the records resident there (the result comes back to the CPU)."""
    model = copy.deepcopy(model).to(device)
    train_idx, _ = d.split(cfg.val_fraction)
    x = torch.from_numpy(d.x[train_idx]).to(device)
    y = torch.from_numpy(d.y[train_idx]).to(device)
    frozen = model.backbone
    for p in frozen.parameters():
        p.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.base_lr,
                          momentum=cfg.momentum)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model.train()
    frozen.eval()
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(train_idx), generator=gen).to(device)
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.cpu()


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_fused_heads_on_stored_features_equal_plain_training(tmp_path, dropout):
    bb = backbone()
    cands = [CandidateModel(f"c{i}", candidate(bb, i, dropout=dropout),
                            # CPU, as the reference loop: on a GPU dropout draws from the device's
                            # generator (tests/test_engine_cuda.py compares with a GPU loop)
                            build_config({**FREEZE, "base_lr": lr, "seed": i, "device": "cpu"}))
             for i, lr in enumerate((0.1, 0.03))]
    d = data()
    r = run_selection(cands, d, store=FeatureStore(tmp_path), extraction_batch_size=7)
    assert r.reuse.fused_groups == (2,) and r.reuse.materialized
    for cand, out in zip(cands, r.outcomes):
        ref = plain_train(cand.model, cand.config, d).state_dict()
        got = out.model.state_dict()
        assert list(ref) == list(got)
        for k in ref:
            # stated tolerance: features computed in batches of 7 vs 16 may differ in the last bit
            torch.testing.assert_close(got[k], ref[k], rtol=0, atol=1e-5)
        assert not torch.equal(got["head.0.weight"], cand.model.state_dict()["head.0.weight"])


def test_keep_top_prunes_after_n_iterations(tmp_path):
    cands = three_candidates(backbone())
    cands.append(CandidateModel("slow", candidate(backbone(), 9), build_config({**FREEZE, "base_lr": 1e-5})))
    r = run_selection(cands, data(), store=FeatureStore(tmp_path), keep=KeepRule(2, "loss", 5))
    by = {o.cid: o for o in r.outcomes}
    finished = [o for o in r.outcomes if o.status == "finished"]
    pruned = [o for o in r.outcomes if o.status == "pruned"]
    assert len(finished) == 2 and len(pruned) == 2
    assert all(o.steps == 5 for o in pruned)
    assert all(o.steps == 3 * 6 for o in finished)  # 3 epochs x ceil(~90/16) steps
    at5 = {o.cid: [v for n, s, v in o.series if n == "val_loss" and s == 5][0] for o in r.outcomes}
    worst_kept = max(at5[o.cid] for o in finished)
    assert all(at5[o.cid] >= worst_kept for o in pruned)
    assert "slow" in {o.cid for o in pruned}
    assert by[finished[0].cid].metrics["val_accuracy"] >= 0


def test_tight_budget_recomputes_and_loose_budget_stores(tmp_path):
    counter = Counter()
    cands = three_candidates(backbone(), counter)
    d = data()
    tight = run_selection(cands, d, store=FeatureStore(tmp_path / "t"), storage_budget=0)
    assert tight.plan.materialize == frozenset() and tight.reuse.bytes_written == 0
    assert tight.reuse.records_recomputed > 0
    loose_store = FeatureStore(tmp_path / "l")
    loose = run_selection(cands, d, store=loose_store, storage_budget=None)
    assert len(loose.plan.materialize) >= 1 and loose.reuse.records_recomputed == 0
    assert loose_store.bytes_used() > 0
    # same heads either way
    for a, b in zip(tight.outcomes, loose.outcomes):
        torch.testing.assert_close(a.model.state_dict()["head.0.weight"], b.model.state_dict()["head.0.weight"],
                                   rtol=0, atol=1e-5)


def test_augmented_candidates_are_not_materialized(tmp_path):
    bb = backbone()
    cfg = build_config({**FREEZE, "base_lr": 0.1, "augment": {"noise": 0.1}})
    r = run_selection([CandidateModel("aug", candidate(bb, 0), cfg)], data(), store=FeatureStore(tmp_path))
    assert r.plan.materialize == frozenset()
    assert r.reuse.records_recomputed >= 3 * 120   # the prefix ran again every epoch


def test_fine_tuning_candidates_share_the_shorter_prefix(tmp_path):
    bb = backbone()
    frozen_all = build_config({**FREEZE, "base_lr": 0.1})
    tune_last = build_config({**FREEZE, "base_lr": 0.1, "net": {"backbone": {"lr": 0}, "backbone.3": {"lr": 1}}})
    r = run_selection([CandidateModel("head", candidate(bb, 0), frozen_all),
                       CandidateModel("ft", candidate(bb, 1), tune_last)], data(), store=FeatureStore(tmp_path))
    by = {o.cid: o for o in r.outcomes}
    assert by["head"].frozen_stages == 6 and by["ft"].frozen_stages == 3
    assert r.reuse.prefix_nodes == 6 and sorted(r.reuse.fused_groups) == [1, 1]
    assert not torch.equal(by["ft"].model.state_dict()["backbone.3.weight"], bb[3].weight)
    torch.testing.assert_close(by["head"].model.state_dict()["backbone.3.weight"], bb[3].weight)


def test_corrupt_feature_chunk_is_detected(tmp_path):
    store = FeatureStore(tmp_path)
    run_selection(three_candidates(backbone()), data(), store=store)
    chunk = next(tmp_path.rglob("*.npy"))
    raw = bytearray(chunk.read_bytes())
    raw[-1] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    with pytest.raises(FeatureStoreError, match="does not match its checksum; delete"):
        run_selection(three_candidates(backbone()), data(), store=FeatureStore(tmp_path))


def test_float16_features_only_when_asked(tmp_path):
    store = FeatureStore(tmp_path)
    run_selection(three_candidates(backbone()), data(), store=store, feature_dtype="float16")
    arrays = [np.load(p) for p in tmp_path.rglob("*.npy")]
    assert arrays and all(a.dtype == np.float16 for a in arrays)
    store32 = FeatureStore(tmp_path / "32")
    run_selection(three_candidates(backbone()), data(), store=store32)
    assert all(np.load(p).dtype == np.float32 for p in (tmp_path / "32").rglob("*.npy"))


class PicklyMemory(nn.Module):
    """Parameter-free frozen stage that 'runs out of memory' on batches over ``limit`` records."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def extra_repr(self) -> str:
        return ""   # same content hash whatever the limit: both runs share nothing but must agree

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 1.00 GiB (simulated)")
        return x


def test_extraction_halves_its_batch_on_out_of_memory(tmp_path):
    def run(limit: int, folder: str):
        bb = backbone()
        bb.insert(1, PicklyMemory(limit))
        model = nn.Sequential(OrderedDict(backbone=bb, head=candidate(backbone(), 0).head))
        cands = [CandidateModel("c", model, build_config({**FREEZE, "base_lr": 0.1}))]
        return run_selection(cands, data(), store=FeatureStore(tmp_path / folder), extraction_batch_size=64)

    tight, roomy = run(16, "tight"), run(10**6, "roomy")
    assert tight.reuse.oom_backoffs == 2 and tight.reuse.extraction_batch_size == 16
    assert roomy.reuse.oom_backoffs == 0 and roomy.reuse.extraction_batch_size == 64
    torch.testing.assert_close(tight.outcomes[0].model.state_dict()["head.0.weight"],
                               roomy.outcomes[0].model.state_dict()["head.0.weight"], rtol=0, atol=1e-5)
