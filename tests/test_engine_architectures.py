"""The engine on the architectures people fine-tune: residual CNNs (blocks in a ModuleList, cut
after a residual add) and a transformer encoder with two inputs (token ids + attention mask)
whose hidden states and mask cross every cut together. Trained weights equal a plain PyTorch
loop; multi-input datasets round-trip bit-exactly; evaluate takes the latest version only."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from modelhub.engine import CandidateModel, run_selection
from modelhub.engine.chain import split_into_stages, trainable_part, run_stages
from modelhub.engine.config import build_config
from modelhub.engine.data import DataView, Preprocessing
from modelhub.engine.errors import ConfigError, SplitError
from modelhub.engine.features import FeatureStore
from modelhub.engine.packing import Layout
from modelhub.engine.selection import frozen_prefix_length
from modelhub.engine.train import frozen_layers

torch.set_num_threads(1)


# ---- networks built here ----------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return self.proj(torch.relu(self.bn(self.conv(x)))) + x


class ResNetLike(nn.Module):
    def __init__(self, c: int = 6, blocks: int = 4, classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, padding=1)
        self.blocks = nn.ModuleList(Block(c) for _ in range(blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.fc(self.pool(x).flatten(1))


class Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, 1.0 / math.sqrt(d // heads)
        self.q, self.k, self.v, self.out = (nn.Linear(d, d) for _ in range(4))
        self.norm = nn.LayerNorm(d)

    def forward(self, h, bias):
        b, t, d = h.size(0), h.size(1), h.size(2)
        def split(z):
            return z.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        scores = torch.matmul(split(self.q(h)), split(self.k(h)).transpose(-1, -2)) * self.scale
        ctx = torch.matmul(torch.softmax(scores + bias, dim=-1), split(self.v(h)))
        return self.norm(h + self.out(ctx.transpose(1, 2).reshape(b, t, d)))


class Layer(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.attn = Attention(d, heads)
        self.ff1, self.act, self.ff2 = nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d)
        self.drop = nn.Dropout(0.1)
        self.norm = nn.LayerNorm(d)

    def forward(self, h, bias):
        h = self.attn(h, bias)
        return self.norm(h + self.drop(self.ff2(self.act(self.ff1(h)))))


class TinyEncoder(nn.Module):
    """BERT-shaped: embeddings, layers in a ModuleList, masked mean pooling, a head."""

    def __init__(self, vocab: int = 50, d: int = 16, heads: int = 2, layers: int = 3, classes: int = 3) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, d)
        self.positions = nn.Embedding(32, d)
        self.emb_norm = nn.LayerNorm(d)
        self.layers = nn.ModuleList(Layer(d, heads) for _ in range(layers))
        self.head = nn.Linear(d, classes)

    def forward(self, input_ids, attention_mask):
        pos = torch.arange(input_ids.size(1), device=input_ids.device)
        h = self.emb_norm(self.tokens(input_ids) + self.positions(pos))
        mask = attention_mask.float()
        bias = (1.0 - mask[:, None, None, :]) * -1e4
        for layer in self.layers:
            h = layer(h, bias)
        pooled = (h * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True)
        return self.head(pooled)


def image_data(n: int = 64, uid: str = "img") -> DataView:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = (rng.standard_normal((n, 1, 6, 6)) * 0.5 + y[:, None, None, None]).astype(np.float32)
    return DataView(uid, 1, x, y)


def token_arrays(n: int = 60, t: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    ids = rng.integers(3, 50, (n, t))
    ids[:, 0] = y          # the label is in the first token: learnable
    lengths = rng.integers(4, t + 1, n)
    mask = (np.arange(t)[None, :] < lengths[:, None]).astype(np.int64)
    ids = ids * mask
    return ids.astype(np.int64), mask, y


def token_data(n: int = 60, uid: str = "tok") -> DataView:
    from modelhub.engine.packing import pack_arrays
    ids, mask, y = token_arrays(n)
    packed, layout = pack_arrays([ids, mask])
    return DataView(uid, 1, packed, y, meta={"layout": layout.describe()})


# ---- cutting ------------------------------------------------------------------------------
def test_residual_blocks_in_a_module_list_are_cut_after_each_add():
    model = ResNetLike().eval()
    x = torch.randn(3, 1, 6, 6)
    with_example = split_into_stages(model, (x,))
    without = split_into_stages(model)
    ends = [s.name for s in with_example]
    # a cut right after every block's add: the next block can start a trainable part
    assert sum(1 for e in ends if e.startswith("add")) == 4
    assert len(with_example) > len(without)
    with torch.no_grad():
        ref = model(x)
        assert torch.equal(run_stages(with_example, x), ref)
        for p in range(1, len(with_example)):
            assert torch.equal(run_stages(trainable_part(with_example, p), run_stages(with_example[:p], x)), ref)


def test_transformer_cuts_carry_hidden_states_and_mask_packed_bit_exactly():
    model = TinyEncoder().eval()
    ids, mask, _ = token_arrays(4)
    example = (torch.from_numpy(ids), torch.from_numpy(mask))
    stages = split_into_stages(model, example)
    assert any(s.packed_out for s in stages)
    packed_in = Layout.of(example).pack(example)
    with torch.no_grad():
        ref = model(*example)
        assert torch.equal(run_stages(stages, packed_in), ref)
        between_layers = [i for i, s in enumerate(stages) if s.name == "layers.0.norm"][0] + 1
        feats = run_stages(stages[:between_layers], packed_in)
        assert torch.equal(run_stages(trainable_part(stages, between_layers), feats), ref)


def test_packing_round_trips_every_dtype_bit_exactly():
    tensors = [torch.tensor([[1.5, float("nan")], [-0.0, 2.0]]), torch.tensor([[2**40], [-7]]),
               torch.tensor([[True, False, True], [False, False, True]]),
               torch.tensor([[1.0], [65504.0]], dtype=torch.float16)]
    layout = Layout.of(tensors)
    packed = layout.pack(tensors)
    assert packed.dtype == torch.float32 and packed.shape == (2, layout.words)
    for a, b in zip(layout.unpack(packed), tensors):
        assert a.dtype == b.dtype and torch.equal(a.reshape(-1).view(torch.uint8) if a.dtype != torch.bool else a,
                                                  b.reshape(-1).view(torch.uint8) if b.dtype != torch.bool else b)


# ---- equivalence with a plain loop ---------------------------------------------------------------
def plain_train(model: nn.Module, cfg, d: DataView, inputs, frozen, frozen_blocks) -> nn.Module:
    """What a user writes: full forward every step, frozen blocks in eval mode (their dropouts
    off), same shuffling."""
    model = copy.deepcopy(model)
    train_idx, _ = d.split(cfg.val_fraction)
    xs = [torch.from_numpy(a[train_idx]) for a in inputs]
    y = torch.from_numpy(d.y[train_idx].astype(np.int64))
    for name, p in model.named_parameters():
        p.requires_grad_(not frozen(name))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.base_lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model.train()
    for name in frozen_blocks:
        model.get_submodule(name).eval()
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(train_idx), generator=gen)
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            loss = nn.functional.cross_entropy(model(*[x[idx] for x in xs]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model


def assert_same_weights(got: nn.Module, ref: nn.Module, atol: float) -> None:
    g, r = got.state_dict(), ref.state_dict()
    assert list(g) == list(r)
    for k in r:
        torch.testing.assert_close(g[k], r[k], rtol=0, atol=atol, msg=lambda m: f"{k}: {m}")


@pytest.mark.parametrize("memory_format,atol", [("contiguous", 1e-5), ("channels_last", 1e-4)])
def test_residual_cnn_trains_like_a_plain_loop(tmp_path, memory_format, atol):
    torch.manual_seed(0)
    model = ResNetLike().eval()
    d = image_data()
    rules = {"stem": {"lr": 0}, "blocks.[0,1]": {"lr": 0}}
    # the reference loop runs on the CPU, so the engine does too (tests/test_engine_cuda.py: the GPU twin)
    cfg = build_config({"epochs": 2, "batch_size": 8, "optimizer": "adam", "base_lr": 0.01, "net": rules,
                        "memory_format": memory_format, "device": "cpu"})
    r = run_selection([CandidateModel("a", model, cfg)], d, store=FeatureStore(tmp_path), extraction_batch_size=5)
    out = r.outcomes[0]
    assert out.frozen_stages >= 1 + 2 * 5        # the stem and both frozen blocks, up to their add
    assert r.reuse.records_extracted > 0
    frozen = lambda n: n.startswith(("stem", "blocks.0.", "blocks.1."))  # noqa: E731
    ref = plain_train(model, cfg, d, [d.x], frozen, ["stem", "blocks.0", "blocks.1"])
    assert_same_weights(out.model, ref, atol)
    assert not torch.equal(out.model.state_dict()["blocks.2.proj.weight"], model.state_dict()["blocks.2.proj.weight"])


def test_transformer_encoder_with_two_inputs_trains_like_a_plain_loop(tmp_path):
    torch.manual_seed(0)
    model = TinyEncoder().eval()
    d = token_data()
    ids, mask, _ = token_arrays()
    cfgs = [build_config({"epochs": 2, "batch_size": 8, "optimizer": "adam", "base_lr": lr, "seed": i,
                          "device": "cpu",      # as the CPU reference loop below
                          "net": {"tokens": {"lr": 0}, "positions": {"lr": 0}, "emb_norm": {"lr": 0},
                                  "layers.[0,1]": {"lr": 0}}})
            for i, lr in enumerate((0.01, 0.003))]
    cands = [CandidateModel(f"c{i}", model, c) for i, c in enumerate(cfgs)]
    r = run_selection(cands, d, store=FeatureStore(tmp_path), extraction_batch_size=7)
    assert r.reuse.fused_groups == (2,) and r.reuse.materialized
    # the frozen layers' dropouts belong to them: the prefix runs through both frozen layers
    assert all(o.boundary == r.outcomes[0].boundary for o in r.outcomes)
    stages = split_into_stages(model, d.example(Preprocessing()))
    assert stages[r.outcomes[0].frozen_stages - 1].name == "layers.1.norm"
    frozen = lambda n: n.startswith(("tokens", "positions", "emb_norm", "layers.0.", "layers.1."))  # noqa: E731
    for cand, out in zip(cands, r.outcomes):
        ref = plain_train(model, cand.config, d, [ids, mask], frozen,
                          ["tokens", "positions", "emb_norm", "layers.0", "layers.1"])
        assert_same_weights(out.model, ref, 1e-5)
        assert not torch.equal(out.model.state_dict()["layers.2.ff1.weight"], model.state_dict()["layers.2.ff1.weight"])
    # a second run reads the stored (packed) features: no record passes the prefix again
    again = run_selection(cands, d, store=FeatureStore(tmp_path), extraction_batch_size=7)
    assert again.reuse.records_extracted == 0 and again.reuse.records_loaded > 0
    for a, b in zip(r.outcomes, again.outcomes):
        assert_same_weights(a.model, b.model, 0.0)


def test_packed_features_refuse_float16(tmp_path):
    cfg = build_config({"epochs": 1, "feature_dtype": "float16", "net": {"tokens": {"lr": 0}, "positions": {"lr": 0},
                                                                         "emb_norm": {"lr": 0}}})
    with pytest.raises(ConfigError, match="feature_dtype float16 would round the packed values"):
        run_selection([CandidateModel("a", TinyEncoder(), cfg)], token_data(), store=FeatureStore(tmp_path),
                      feature_dtype="float16")


def test_frozen_prefix_of_a_transformer_ends_at_the_first_trainable_layer():
    model = TinyEncoder()
    ids, mask, _ = token_arrays(3)
    stages = split_into_stages(model, (torch.from_numpy(ids), torch.from_numpy(mask)))
    cfg = build_config({"epochs": 1, "net": {"tokens": {"lr": 0}, "positions": {"lr": 0}, "emb_norm": {"lr": 0},
                                             "layers.0": {"lr": 0}}})
    p = frozen_prefix_length(stages, cfg, frozen_layers(model, cfg))
    assert stages[p - 1].name == "layers.0.norm"
    assert frozen_prefix_length(stages, cfg) < p      # without the frozen block, its dropout ends the prefix
    assert any(n.startswith("layers.1.") for n, _ in stages[p].named_parameters())


# ---- through the repository ---------------------------------------------------------------------
def test_multi_input_dataset_round_trips_and_appends(repo, tmp_path):
    ids, mask, y = token_arrays(30)
    np.savez(tmp_path / "c1.npz", x0=ids[:20], x1=mask[:20], y=y[:20])
    np.savez(tmp_path / "c2.npz", x0=ids[20:], x1=mask[20:], y=y[20:])
    repo.data_add("text", [tmp_path / "c1.npz"])
    repo.data_add("text", [tmp_path / "c2.npz"])
    view = repo.dataset("text")
    got_ids, got_mask = view.layout.unpack(torch.from_numpy(view.x))
    assert view.n == 30 and got_ids.dtype == torch.int64
    assert np.array_equal(got_ids.numpy(), ids) and np.array_equal(got_mask.numpy(), mask)
    np.savez(tmp_path / "bad.npz", x0=ids[:5].astype(np.int32), x1=mask[:5], y=y[:5])
    with pytest.raises(Exception, match="inputs x0: int64"):
        repo.data_add("text", [tmp_path / "bad.npz"])


def test_evaluate_trains_from_the_latest_version_only(repo, tmp_path):
    torch.manual_seed(0)
    d = image_data(40)
    np.savez(tmp_path / "img.npz", x=d.x, y=d.y)
    repo.data_add("img", [tmp_path / "img.npz"])
    first = repo.commit(ResNetLike(), name="res", message="v1")
    second = repo.commit(ResNetLike(blocks=4), name="res", message="v2")
    cfg = tmp_path / "eval.json"
    cfg.write_text('{"dataset": "img", "epochs": 1, "batch_size": 8, "net": {"stem": {"lr": 0}}}')
    query = f'evaluate m from res with config = "{cfg}" vary config.net["blocks.[0,1]"].lr in [0, 1]'
    res = repo.query(query)
    assert {r[1] for r in res.rows} == {second.id[:12]} and len(res.rows) == 2
    assert all("net[\"blocks.[0,1]\"].lr=" in r[3] for r in res.rows)        # readable overrides
    again = repo.query(query)                  # the first run's results are not sources
    assert {r[1] for r in again.rows} == {second.id[:12]} and len(again.rows) == 2
    chosen = repo.query(f'evaluate m from res with config = "{cfg}" where m.seq == 1')
    assert {r[1] for r in chosen.rows} == {first.id[:12]}
    results = repo.query('select m where m.hparams.origin == "evaluate"')
    assert len(results.rows) == 5


class Branchy(nn.Module):
    """Python control flow on a tensor value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.gate = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(4 * 36, 3)

    def forward(self, x):
        h = self.body(x)
        if h.mean() > 0:
            h = self.gate(h)
        return self.fc(h.flatten(1))


def test_a_network_that_does_not_trace_still_trains_and_says_which_module_stopped_it(tmp_path):
    cfg = build_config({"epochs": 1, "batch_size": 8, "net": {"body": {"lr": 0}}})
    r = run_selection([CandidateModel("a", Branchy(), cfg)], image_data(32), store=FeatureStore(tmp_path))
    assert r.outcomes[0].status == "finished" and r.outcomes[0].frozen_stages == 0
    assert len(r.reuse.warnings) == 1
    assert "cannot cut Branchy into stages" in r.reuse.warnings[0]
    assert "its frozen layers are recomputed every step" in r.reuse.warnings[0]


def test_the_untraceable_module_is_named():
    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Branchy()

        def forward(self, x):
            return self.inner(x)
    with pytest.raises(SplitError, match=r"torch.fx stops in inner \(Branchy\)"):
        split_into_stages(Outer(), (torch.randn(2, 1, 6, 6),))


def test_dlv_eval_runs_a_two_input_network_and_progressive_says_why_not(repo, tmp_path):
    ids, mask, y = token_arrays(30)
    np.savez(tmp_path / "t.npz", x0=ids, x1=mask, y=y)
    repo.data_add("text", [tmp_path / "t.npz"])
    torch.manual_seed(0)
    v = repo.commit(TinyEncoder(), name="enc", message="tiny encoder")
    report = repo.eval(v.id, data="text", split="all")
    assert report.n_records == 30 and 0 <= report.metrics["accuracy"] <= 1
    with pytest.raises(ConfigError, match="several inputs; progressive evaluation bounds networks of one float input"):
        repo.eval(v.id, data="text", progressive=True)
    cfg = tmp_path / "eval.json"
    # half the 30 records for validation: the split is salted by the dataset's random uid, and at the
    # default 0.2 one run in ~800 drew no validation record at all (ConfigError "too few")
    cfg.write_text('{"dataset": "text", "epochs": 1, "batch_size": 8, "optimizer": "adam", "base_lr": 0.01, '
                   '"val_fraction": 0.5, '
                   '"net": {"tokens": {"lr": 0}, "positions": {"lr": 0}, "emb_norm": {"lr": 0}, "layers": {"lr": 0}}}')
    res = repo.query(f'evaluate m from enc with config = "{cfg}" vary config.net["layers.2"].lr in [0, 1]')
    assert [r[2] for r in res.rows] == ["finished", "finished"] and res.stats[0]["materialized"]
    trained = repo.checkout(res.rows[1][0]).state_dict
    assert not torch.equal(trained["layers.2.ff1.weight"], repo.checkout(v.id).state_dict["layers.2.ff1.weight"])


def test_evaluate_from_a_mistyped_model_name_is_an_error_not_every_model(repo, tmp_path):
    repo.commit(ResNetLike(), name="res", message="v1")
    with pytest.raises(Exception, match=r'no model named "rse": did you mean "res"\?'):
        repo.query('evaluate m from rse with config = "eval.toml"')
    with pytest.raises(Exception, match=r'no saved query or model named "re-s": did you mean "res"\?'):
        repo.query('evaluate m from "re-s" with config = "eval.toml"')
