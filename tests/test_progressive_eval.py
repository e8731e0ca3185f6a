"""Progressive inference, decisions: labels equal full precision for every record, refinement
reads fewer bytes than everything, unsupported layers are refused (or fall back, reported), the
head-only path over exact features, and the repository / CLI integration."""
from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from helpers import tiny_cnn
from modelhub.progressive import (ProgressiveConfig, ProgressiveInputError, UnsupportedLayerError, build_plan,
                                  evaluate_module, evaluate_progressive, source_from_state_dict)
from modelhub.repo.engine_access import engine_access

torch.set_num_threads(1)


def reference_topk(module: nn.Module, x: torch.Tensor, k: int) -> list[set]:
    with torch.no_grad():
        return [set(r) for r in torch.topk(module.eval()(x), k, dim=1).indices.tolist()]


def trained_like(seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A tiny CNN and inputs whose logits have clear margins for most records, a few near-ties."""
    model = tiny_cnn(seed).eval()
    x = torch.randn(120, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    return model, x


@pytest.mark.parametrize("top_k", [1, 3])
@pytest.mark.parametrize("start", [2, 3])
def test_labels_equal_full_precision_for_every_record(top_k, start):
    model, x = trained_like(top_k + start)
    report = evaluate_module(model, x, top_k=top_k, config=ProgressiveConfig(start_segments=start), compare=True)
    assert [set(r) for r in report.labels.tolist()] == reference_topk(model, x, top_k)
    assert report.agreement == 1.0 and report.full_time_s is not None
    assert report.levels[-1].certified_fraction == 1.0
    assert sum(s.certified for s in report.levels) == report.n_records
    assert 0 < report.bytes_read <= report.bytes_total
    assert report.record_bytes_fraction <= report.bytes_fraction


def test_coarse_reads_suffice_for_most_records():
    model, x = trained_like(7)
    report = evaluate_module(model, x, top_k=1)
    first = report.levels[0]
    assert first.certified > 0 and first.bytes_fraction < 0.6
    assert report.record_bytes_fraction < 0.75


def test_near_ties_are_decided_by_the_exact_network():
    # two identical output rows: every record is an exact tie, never certifiable by bounds
    model = tiny_cnn(0, n_classes=2).eval()
    with torch.no_grad():
        model.fc2.weight[1] = model.fc2.weight[0]
        model.fc2.bias[1] = model.fc2.bias[0]
    x = torch.randn(10, 1, 8, 8)
    report = evaluate_module(model, x, top_k=1)
    assert report.exact_records == 10 and report.bytes_fraction == 1.0
    assert report.labels[:, 0].tolist() == torch.argmax(model(x), 1).tolist()


def near_tie_layer() -> tuple[nn.Module, torch.Tensor]:
    """Two outputs one float32 ulp apart on every record: bounds at 7 mantissa bits exceed the margin
    by far more than the 8 bits the next segment could win back, even quadratically."""
    layer = nn.Linear(4, 2).eval()
    with torch.no_grad():
        layer.weight[1] = layer.weight[0]
        layer.bias[0] = 0.5
        layer.bias[1] = float(np.nextafter(np.float32(0.5), np.float32(1.0)))
    return nn.Sequential(layer), torch.randn(6, 4, generator=torch.Generator().manual_seed(3)) * 10


def test_a_hopeless_record_reads_every_tensor_exact_at_once():
    layer, x = near_tie_layer()
    fast = evaluate_module(layer, x, top_k=1)
    slow = evaluate_module(layer, x, top_k=1, config=ProgressiveConfig(exact_when_hopeless=False))
    assert fast.labels[:, 0].tolist() == slow.labels[:, 0].tolist() == torch.argmax(layer(x), 1).tolist()
    assert fast.extra["linear_steps"][0]["hopeless"] == 6
    assert len(fast.levels) == 2 and len(slow.levels) > 2     # step 0, then the exact network
    assert fast.bytes_read <= slow.bytes_read             # every tensor exact either way
    assert fast.exact_records == slow.exact_records == 6


def test_mantissa_bits_per_level_follow_the_segment_layout():
    src = source_from_state_dict({"w": torch.randn(8, 8), "h": torch.randn(8).half(), "i": torch.arange(4)})
    assert src.mantissa_bits("w") == [None, 0, 7, 15, 23]    # exponent, sign, 7 + 8 + 8 mantissa bits
    assert src.mantissa_bits("h") == [None, 2, 10]           # exponent + 2 mantissa bits, sign, 8 more
    assert src.mantissa_bits("i") is None                     # not float: read whole


def test_uniform_refinement_also_exact():
    model, x = trained_like(3)
    report = evaluate_module(model, x, top_k=1, config=ProgressiveConfig(uniform=True, start_segments=1))
    assert [set(r) for r in report.labels.tolist()] == reference_topk(model, x, 1)
    assert all(len(s.refined) in (0, 4) for s in report.levels[:-1])


class WithGelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(5, 6), nn.GELU(), nn.Linear(6, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def test_unsupported_layer_is_refused_with_a_clear_message():
    with pytest.raises(UnsupportedLayerError, match=r"layer act \(GELU\) has no sound bound rule.*without --progressive"):
        build_plan(torch.fx.symbolic_trace(WithGelu()))
    with pytest.raises(UnsupportedLayerError, match=r"layer act \(GELU\)"):
        evaluate_module(WithGelu(), torch.randn(4, 5), fallback=False)


def test_unsupported_layer_falls_back_to_full_precision_and_says_so():
    torch.manual_seed(0)
    model, x = WithGelu().eval(), torch.randn(30, 5)
    report = evaluate_module(model, x, top_k=2)
    assert report.fallback is not None and "GELU" in report.fallback
    assert report.exact_records == 30 and report.bytes_fraction == 1.0
    assert [set(r) for r in report.labels.tolist()] == reference_topk(model, x, 2)


def test_bad_inputs_are_refused():
    with pytest.raises(ProgressiveInputError, match="NaN or infinity"):
        evaluate_module(tiny_cnn(0), torch.full((2, 1, 8, 8), float("nan")))
    with pytest.raises(ProgressiveInputError, match=r"top 11 asked but the network has 10 outputs"):
        evaluate_module(tiny_cnn(0), torch.randn(2, 1, 8, 8), top_k=11)
    with pytest.raises(ProgressiveInputError, match="top_k must be at least 1"):
        ProgressiveConfig(top_k=0)


def backbone_and_head(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(1, 6, 3, padding=1), bn=nn.BatchNorm2d(6).eval(), relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(2),
        flat=nn.Flatten(), fc1=nn.Linear(24, 12), relu2=nn.ReLU(), fc2=nn.Linear(12, 5))).eval()


def test_head_only_over_exact_features_reads_only_the_head():
    model = backbone_and_head()
    x = torch.randn(50, 1, 6, 6)
    with torch.no_grad():
        feats = model[:5](x)                       # the frozen prefix's materialized output
    report = evaluate_module(model, None, top_k=1, given={"flat": feats}, compare=True)
    assert report.head_from == "flat" and report.agreement == 1.0
    assert report.labels[:, 0].tolist() == torch.argmax(model(x), 1).tolist()
    head_bytes = report.bytes_total
    full = evaluate_module(model, x, top_k=1)
    assert head_bytes < full.bytes_total          # the backbone's tensors are neither needed nor read


# ----------------------------------------------------------------- repository and CLI

def add_data(repo, tmp_path, n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32) + y[:, None, None, None]
    np.savez(tmp_path / "recs.npz", x=x, y=y)
    return repo.data_add("recs", [tmp_path / "recs.npz"])


def test_repo_version_progressive_matches_full_precision(repo):
    model = tiny_cnn(4, n_classes=3).eval()
    repo.commit(model, name="lenet", message="init")
    x = torch.randn(40, 1, 8, 8)
    report = evaluate_progressive(engine_access(repo), "lenet", x, top_k=1, compare=True)
    assert report.version == "lenet" and report.agreement == 1.0
    assert report.labels[:, 0].tolist() == torch.argmax(model(x), 1).tolist()
    assert report.bytes_read < report.bytes_total


def test_delta_encoded_tensors_are_read_whole_and_reported():
    from modelhub.progressive import ManifestSource, TensorEntry, source_from_state_dict
    from modelhub.storage import tensors as st
    from modelhub.storage.objects import content_hash
    from modelhub.storage.segmented import SegmentedConfig
    from modelhub.tensorio import tensor_to_raw

    model = tiny_cnn(5, n_classes=3).eval()
    base = model.fc2.weight.detach().clone()
    with torch.no_grad():
        model.fc2.weight.add_(1e-3)
    plain = source_from_state_dict(model.state_dict())
    braw, dtype, shape = tensor_to_raw(base)
    raw, _, _ = tensor_to_raw(model.fc2.weight.detach())
    bhash = st.tensor_hash(braw, dtype, shape)
    benc = st.encode_tensor(braw, dtype, shape)
    denc = st.encode_tensor(raw, dtype, shape, config=SegmentedConfig(delta="xor"), base_raw=braw, base_hash=bhash)
    assert st.delta_base(denc.manifest) == bhash
    blobs = {content_hash(b): b for b in benc.blobs + denc.blobs}
    entries = dict(plain.entries)
    entries["fc2.weight"] = TensorEntry("fc2.weight", denc.manifest, dtype, tuple(shape), len(raw))
    base_entry = TensorEntry("(base)", benc.manifest, dtype, tuple(shape), len(braw), bhash)
    src = ManifestSource(entries, lambda h: blobs[h] if h in blobs else plain.fetch(h), lambda h: base_entry)
    x = torch.randn(20, 1, 8, 8)
    report = evaluate_module(model, x, source=src, compare=True)
    assert report.exact_only == ("fc2.weight",) and report.agreement == 1.0
    assert report.labels[:, 0].tolist() == torch.argmax(model(x), 1).tolist()
    # the delta and its base are counted whole in what the query must read
    assert src.total_bytes("fc2.weight") == sum(denc.manifest["sizes"]) + sum(benc.manifest["sizes"])


def test_repo_eval_and_cli_progressive(repo, tmp_path, cli):
    add_data(repo, tmp_path)
    repo.commit(tiny_cnn(6, n_classes=3), name="net", message="init")
    report = repo.eval("net", data="recs", split="all", progressive=True, top_k=2)
    assert report.n_records == 60 and report.labels.shape == (60, 2) and report.agreement == 1.0
    code, out, err = cli("eval", "net", "--data", "recs@1", "--split", "all", "--progressive", "--top", "2",
                         "--json", "--repo", str(repo.root))
    assert code == 0, err
    got = json.loads(out)
    assert got["labels"] == report.labels.tolist() and got["agreement"] == 1.0
    code, out, err = cli("eval", "net", "--data", "recs", "--progressive", "--repo", str(repo.root))
    assert code == 0 and "bytes read" in out and "cumulative %" in out, err
