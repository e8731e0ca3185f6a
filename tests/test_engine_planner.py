"""Planner exactness and decisions, OOM back-off, stage splitting, config parsing."""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch
from torch import nn

from modelhub.engine.chain import run_stages, split_into_stages
from modelhub.engine.config import build_config, load_config_file, parse_size
from modelhub.engine.errors import ConfigError, ExtractionMemoryError
from modelhub.engine.extract import ExtractionStats, batch_size_for, run_batched
from modelhub.engine.planner import PlanCosts, PlanNode, solve


def brute_force(nodes, costs):
    """Independent evaluation of every subset under the documented cost model."""
    by = {n.key: n for n in nodes}
    N = costs.n_records

    def anc(k, chosen):
        p = by[k].parent
        while by[p].parent is not None and p not in chosen:
            p = by[p].parent
        return p

    def path(a, v):
        s = 0.0
        while v != a:
            s += by[v].compute_s
            v = by[v].parent
        return s

    inner = [n.key for n in nodes if n.parent is not None]
    best = None
    for r in range(len(inner) + 1):
        for chosen in itertools.combinations(inner, r):
            chosen = set(chosen)
            size = sum(N * by[k].bytes_per_record for k in chosen)
            if costs.storage_budget is not None and size > costs.storage_budget:
                continue
            total = 0.0
            for k in inner:
                n, a = by[k], anc(k, chosen)
                read_a = 0 if by[a].parent is None else by[a].bytes_per_record / costs.read_bytes_per_s
                if k in chosen:
                    reads = 0 if n.demand_epochs == 0 else (1 if N * n.bytes_per_record <= costs.memory_cache else n.demand_epochs)
                    total += (N - n.stored_records) * (path(a, k) + n.bytes_per_record / costs.write_bytes_per_s)
                    total += reads * N * n.bytes_per_record / costs.read_bytes_per_s
                else:
                    total += n.demand_epochs * N * (read_a + path(a, k))
            if best is None or total < best:
                best = total
    return best


def random_tree(rng: random.Random, n: int) -> list[PlanNode]:
    nodes = [PlanNode("r", None, 0.0, 100, 0)]
    for i in range(n):
        parent = rng.choice(nodes).key
        nodes.append(PlanNode(f"n{i}", parent, rng.uniform(1e-4, 1e-2), rng.choice([8, 64, 512, 4096]),
                              rng.choice([0, 0, 1, 5, 20]), rng.choice([0, 0, 100])))
    return nodes


@pytest.mark.parametrize("seed", range(8))
def test_dp_matches_brute_force_without_rounding(seed):
    rng = random.Random(seed)
    nodes = random_tree(rng, 7)
    budget = rng.choice([None, 0, 50_000, 400_000, 2_000_000])
    costs = PlanCosts(5e8, 2e8, 1000, budget, memory_cache=rng.choice([0, 1 << 30]))
    plan = solve(nodes, costs, units=4096)
    expected = brute_force(nodes, costs)
    assert plan.estimated_s == pytest.approx(expected, rel=1e-6, abs=1e-9)
    if budget is not None:
        assert plan.storage_bytes <= budget


def chain(demand=10):
    # input -> expensive conv (big output) -> pool (small output, where the heads read)
    return [PlanNode("in", None, 0.0, 3072, 0),
            PlanNode("conv", "in", 2e-3, 32768, 0),
            PlanNode("pool", "conv", 1e-5, 512, demand)]


def test_loose_budget_stores_the_small_boundary_tight_budget_recomputes():
    N = 10_000
    loose = solve(chain(), PlanCosts(1e9, 5e8, N, None))
    assert loose.materialize == {"pool"}
    assert loose.estimated_s < loose.recompute_s / 5
    tight = solve(chain(), PlanCosts(1e9, 5e8, N, N * 512 - 1))
    assert tight.materialize == frozenset()
    assert tight.estimated_s == pytest.approx(tight.recompute_s)
    # one epoch: storing cannot pay off, so nothing is written even with room
    once = solve(chain(demand=1), PlanCosts(1e9, 5e8, N, None))
    assert once.materialize == frozenset()


def test_slow_disk_prefers_recompute_of_cheap_layers():
    nodes = [PlanNode("in", None, 0.0, 4, 0), PlanNode("cheap", "in", 1e-8, 1 << 20, 10)]
    plan = solve(nodes, PlanCosts(read_bytes_per_s=1e6, write_bytes_per_s=1e6, n_records=100,
                                  storage_budget=None, memory_cache=0))
    assert plan.materialize == frozenset()


def test_out_of_memory_halves_the_batch_and_retries():
    seen: list[tuple[int, int]] = []

    def step(a: int, b: int) -> None:
        if b - a > 8:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        seen.append((a, b))

    stats = ExtractionStats()
    final = run_batched(0, 50, 64, step, stats)
    assert final == 8 and stats.oom_backoffs == 3
    assert [r for a, b in seen for r in range(a, b)] == list(range(50))   # every record once, in order


def test_out_of_memory_at_batch_one_is_reported():
    def step(a: int, b: int) -> None:
        raise RuntimeError("out of memory")

    with pytest.raises(ExtractionMemoryError, match="batch of one record; lower the input"):
        run_batched(0, 4, 4, step, ExtractionStats())


def test_other_errors_are_not_retried():
    def step(a: int, b: int) -> None:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_batched(0, 4, 4, step, ExtractionStats())


def test_extraction_batch_size_comes_from_the_memory_budget():
    assert batch_size_for(per_record_bytes=1000, memory_budget=300_000) == 100
    assert batch_size_for(per_record_bytes=10**9, memory_budget=1) == 1


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = h + self.conv2(h)          # a residual: no cut inside it
        return self.fc(torch.flatten(h, 1))


def test_traced_networks_split_at_single_tensor_cuts():
    torch.manual_seed(0)
    model = Branchy().eval()
    stages = split_into_stages(model)
    x = torch.randn(5, 1, 8, 8)
    torch.testing.assert_close(run_stages(stages, x), model(x), rtol=0, atol=0)
    assert [s.name for s in stages] == ["conv1", "fc"]
    names = [n for s in stages for n, _ in s.named_parameters()]
    assert names == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias"]


def test_toml_config_with_layer_patterns(tmp_path):
    p = tmp_path / "cfg.toml"
    p.write_text('dataset = "digits@2"\nbase_lr = 0.1\nepochs = 2\n[net."conv[1,3]"]\nlr = 0\n[net.fc]\nlr = 0.5\n')
    cfg = build_config(load_config_file(p), overrides=((("base_lr",), 0.01), (("net", "conv*", "lr"), 0.2)))
    assert cfg.dataset == "digits@2" and cfg.base_lr == 0.01
    assert cfg.lr_multiplier("conv1") == 0.2 and cfg.lr_multiplier("conv2") == 0.2   # later rule wins
    assert cfg.lr_multiplier("fc") == 0.5 and cfg.lr_multiplier("fc.0") == 0.5        # ancestors match
    assert cfg.lr_multiplier("other") == 1.0
    cfg2 = build_config(load_config_file(p))
    assert cfg2.lr_multiplier("conv3") == 0 and cfg2.lr_multiplier("conv2") == 1.0


def test_config_errors_say_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="neither epochs nor iterations; add e.g. epochs = 5"):
        build_config({"base_lr": 0.1})
    with pytest.raises(ConfigError, match="unknown optimizer 'rmsprop'; use one of"):
        build_config({"epochs": 1, "optimizer": "rmsprop"})
    with pytest.raises(ConfigError, match="unknown config key 'lerning_rate'"):
        build_config({"epochs": 1, "lerning_rate": 0.1})
    with pytest.raises(ConfigError, match=r'net\["conv\*"\].lr must be >= 0'):
        build_config({"epochs": 1, "net": {"conv*": {"lr": -1}}})
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_config_file(bad)
    # binary units, as everywhere in dlv (modelhub/sizes.py; issue 15: "500M" means one thing)
    assert parse_size("2GiB") == 2 * 2**30 and parse_size("500MB") == 500 * 2**20 and parse_size("unlimited") is None
    with pytest.raises(ConfigError, match="write a size such as 500MB"):
        parse_size("lots")


def test_candidates_must_share_the_loss():
    from modelhub.engine.data import DataView
    from modelhub.engine.selection import CandidateModel, run_selection
    d = DataView("u", 1, np.zeros((10, 3), np.float32), np.zeros(10, np.int64))
    model = nn.Sequential(nn.Linear(3, 2))
    cands = [CandidateModel("a", model, build_config({"epochs": 1})),
             CandidateModel("b", model, build_config({"epochs": 1, "loss": "mse"}))]
    with pytest.raises(ConfigError, match="candidates differ in loss .* separate evaluate queries"):
        run_selection(cands, d, store=None)
