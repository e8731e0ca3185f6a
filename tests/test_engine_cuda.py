"""The engine's CUDA path (skipped where torch sees no GPU; benchmarks/gpu_engine.sh runs it on one).

On a GPU a step reads features kept on the device, dropout draws from the device's
generator, and the outcome models come back where the caller's models live. The
reference loop runs on the same device, so weights agree to float rounding."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from modelhub.engine.config import build_config
from modelhub.engine.data import DataView
from modelhub.engine.features import FeatureStore
from modelhub.engine.selection import CandidateModel, run_selection
from test_engine_reuse import data as reuse_data
from test_engine_reuse import plain_train     # the same textbook loop, on the GPU

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def net(seed: int, dropout: float) -> nn.Sequential:
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
    head = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3))
    return nn.Sequential(OrderedDict(backbone=backbone, head=head))


def data() -> DataView:
    return reuse_data(96, uid="ds-cuda")


def config(lr: float, seed: int = 0):
    return build_config({"net": {"backbone": {"lr": 0}}, "epochs": 2, "batch_size": 16, "base_lr": lr,
                         "seed": seed, "device": "cuda"})


def weights(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in m.state_dict().items()}


def test_cuda_candidates_with_dropout_train_like_a_plain_loop_and_come_back_to_the_cpu(tmp_path):
    cands = [CandidateModel(f"c{i}", net(0, 0.3), config(lr)) for i, lr in enumerate((0.1, 0.03))]
    r = run_selection(cands, data(), store=FeatureStore(tmp_path))
    assert r.reuse.fused_groups == (2,)
    for cand, out in zip(cands, r.outcomes):
        assert {p.device.type for p in out.model.parameters()} == {"cpu"}
        ref = weights(plain_train(cand.model, cand.config, data(), device="cuda"))
        got = weights(out.model)
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=0, atol=1e-5, msg=lambda m: f"{k}: {m}")


def test_fused_cuda_candidates_train_exactly_as_alone_and_repeat_exactly(tmp_path):
    """The device generator is saved and restored per candidate: fusing two heads with dropout
    draws the same masks for each as training it alone, and a second run repeats the first."""
    cands = [CandidateModel(f"c{i}", net(0, 0.5), config(0.05, seed=i)) for i in range(2)]
    fused = run_selection(cands, data(), store=FeatureStore(tmp_path / "a"))
    alone = run_selection(cands[1:], data(), store=FeatureStore(tmp_path / "b"))
    again = run_selection(cands, data(), store=FeatureStore(tmp_path / "c"))
    for k, v in weights(alone.outcomes[0].model).items():
        assert torch.equal(weights(fused.outcomes[1].model)[k], v), k
    for a, b in zip(fused.outcomes, again.outcomes):
        for k, v in weights(a.model).items():
            assert torch.equal(weights(b.model)[k], v), k
