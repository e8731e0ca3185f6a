"""Progressive inference, soundness: the exact output (real arithmetic, float64) and the float32
reference output lie inside the propagated bounds, for every layer type's rule and for random
small networks (hypothesis), even with the weights moved to the ends of their intervals."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.fx
from hypothesis import given, settings, strategies as st
from torch import nn

from modelhub.progressive import build_plan, source_from_state_dict
from modelhub.progressive.params import affine_params, group_reader
from modelhub.progressive.propagate import propagate
from modelhub.progressive.rules import Box, Ctx, monotone

torch.set_num_threads(1)


def bounds_at(module: nn.Module, x: torch.Tensor, k: int):
    gm = torch.fx.symbolic_trace(module).eval()
    plan = build_plan(gm)
    src = source_from_state_dict(gm.state_dict())
    levels = {t: min(k, src.levels(t)) for t in plan.tensors()}
    read = group_reader(src, levels)
    params = {g: affine_params(grp, read, plan.u_ref) for g, grp in plan.groups.items()}
    with torch.no_grad():
        box = propagate(plan, x, params, Ctx(plan.u_ref))
    return box, src, levels, plan


def corner_network(module: nn.Module, src, levels, which: str, seed: int) -> nn.Module:
    """The network (float64) with every weight moved to a point of its read interval."""
    net = copy.deepcopy(module).double().eval()
    state = net.state_dict()
    gen = torch.Generator().manual_seed(seed)
    for name, k in levels.items():
        lo, hi = src.intervals(name, k)
        u = {"lo": torch.zeros_like(lo), "hi": torch.ones_like(lo),
             "rand": torch.rand(lo.shape, generator=gen, dtype=torch.float64)}[which]
        w = lo + (hi - lo) * u
        if name.endswith("running_var"):
            w = w.clamp(min=0.0)
        state[name] = w
    net.load_state_dict(state)
    return net


def assert_inside(box: Box, y: torch.Tensor, what: str) -> None:
    y = y.to(torch.float64)
    lo, hi = box.lo(), box.hi()
    assert bool(((lo <= y) & (y <= hi)).all()), f"{what} escapes the bounds by {float(torch.maximum(lo - y, y - hi).max())}"


def check_sound(module: nn.Module, x: torch.Tensor, k: int, seed: int = 0) -> Box:
    module = module.eval()
    box, src, levels, _ = bounds_at(module, x, k)
    with torch.no_grad():
        assert_inside(box, module(x), "the float32 reference output")
        assert_inside(box, copy.deepcopy(module).double()(x.double()), "the exact (float64) output")
        for which in ("lo", "hi", "rand"):
            net = corner_network(module, src, levels, which, seed)
            assert_inside(box, net(x.double()), f"the output with weights at '{which}'")
    return box


# ----------------------------------------------------------------- one module per bound rule

class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 3, 3, padding=1)
        self.b = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return torch.relu(self.a(x)) + self.b(x)


class Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 2, 3, padding=1)
        self.b = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return torch.cat([self.a(x), torch.sigmoid(self.b(x))], 1).mean((2, 3))


def _bn(c: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c).eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.05, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
    return bn


LAYERS = {
    "conv": lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)),
    "depthwise_conv": lambda: nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False)),
    "strided_conv": lambda: nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, dilation=1)),
    "linear": lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 5)),
    "conv_bn_folded": lambda: nn.Sequential(nn.Conv2d(3, 4, 3), _bn(4)),
    "batchnorm_alone": lambda: nn.Sequential(_bn(3)),
    "relu": lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU()),
    "relu6": lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU6()),
    "leaky_relu": lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.LeakyReLU(0.1)),
    "sigmoid": lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.Sigmoid()),
    "tanh": lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.Tanh()),
    "hardsigmoid": lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.Hardsigmoid()),
    "max_pool": lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.MaxPool2d(2)),
    "avg_pool": lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.AvgPool2d(3)),
    "adaptive_avg_pool": lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
    "residual_add": Residual,
    "concat_and_mean": Concat,
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("k", [2, 3, 4])
def test_each_layer_rule_is_sound(kind, k):
    torch.manual_seed(1)
    module = LAYERS[kind]()
    x = torch.randn(6, 3, 6, 6)
    check_sound(module, x, k)


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_each_layer_rule_is_tight_with_exact_weights(kind):
    # with every segment read the only width left is rounding: a rule returning 'anything'
    # (infinite or huge radii) would be sound but useless, and fails here
    torch.manual_seed(2)
    module = LAYERS[kind]().eval()
    x = torch.randn(4, 3, 6, 6)
    box, _, _, _ = bounds_at(module, x, 99)
    scale = 1.0 + float(box.c.abs().max())
    assert float(box.r.max()) < 1e-4 * scale


def test_conv_then_batchnorm_is_folded():
    module = nn.Sequential(nn.Conv2d(3, 4, 3), _bn(4), nn.ReLU(), _bn(4))
    plan = build_plan(torch.fx.symbolic_trace(module))
    assert plan.folded == ("_1",)
    assert plan.groups["_0"].bn is not None and plan.groups["_3"].kind == "bn"


@pytest.mark.parametrize("f", [torch.relu, torch.sigmoid, torch.tanh, lambda t: torch.clamp(t, 0, 6)])
def test_monotone_rule_contains_every_point_of_an_input_box(f):
    gen = torch.Generator().manual_seed(3)
    c = torch.randn(200, dtype=torch.float64, generator=gen) * 3
    r = torch.rand(200, dtype=torch.float64, generator=gen)
    out = monotone(Box(c, r), f, Ctx(2.0 ** -24), 8.0, 8.0)
    for t in (0.0, 0.3, 0.99, 1.0):
        pts = c - r + 2 * r * t
        assert_inside(out, f(pts), f"f at t={t}")
        assert_inside(out, f(pts.float()), f"float32 f at t={t}")


# ----------------------------------------------------------------- random small networks

class RandomNet(nn.Module):
    def __init__(self, c: int, depthwise: bool, bn: bool, act: str, pool: str, residual: bool, concat: bool):
        super().__init__()
        self.stem = nn.Conv2d(2, c, 3, padding=1, bias=not bn)
        self.bn1 = _bn(c) if bn else nn.Identity()
        self.act = {"relu": nn.ReLU(), "relu6": nn.ReLU6(), "tanh": nn.Tanh(), "leaky": nn.LeakyReLU(0.2)}[act]
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c if depthwise else 1)
        self.bn2 = _bn(c) if bn else nn.Identity()
        self.pool = {"max": nn.MaxPool2d(2), "avg": nn.AvgPool2d(2), "adaptive": nn.AdaptiveAvgPool2d(2)}[pool]
        self.residual, self.concat = residual, concat
        self.head = nn.Linear((2 * c if concat else c) * 4, 4)

    def forward(self, x):
        h = self.act(self.bn1(self.stem(x)))
        y = self.act(self.bn2(self.dw(h)))
        if self.residual:
            y = y + h
        if self.concat:
            y = torch.cat([y, h], 1)
        return self.head(torch.flatten(self.pool(y), 1))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), c=st.integers(1, 4), depthwise=st.booleans(), bn=st.booleans(),
       act=st.sampled_from(["relu", "relu6", "tanh", "leaky"]), pool=st.sampled_from(["max", "avg", "adaptive"]),
       residual=st.booleans(), concat=st.booleans(), k=st.integers(2, 5), scale=st.sampled_from([0.01, 1.0, 50.0]))
def test_random_networks_are_sound(seed, c, depthwise, bn, act, pool, residual, concat, k, scale):
    torch.manual_seed(seed)
    module = RandomNet(c, depthwise, bn, act, pool, residual, concat)
    x = torch.randn(3, 2, 4, 4) * scale
    check_sound(module, x, k, seed)
