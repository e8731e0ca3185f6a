"""From a torch.fx graph to a bound plan: one bound rule per node, batch norm folded, refusals named.

A plan is built once per network. Affine layers (conv, depthwise conv,
linear, and an eval-mode batch norm that directly follows one of them, folded
in) become :class:`AffineGroup` s: the unit of refinement, i.e. the set of
tensors whose precision is raised together. Every other node maps to a rule
in rules.py or the plan is refused with :class:`UnsupportedLayerError`.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from . import rules as R
from .errors import UnsupportedLayerError


@dataclass(frozen=True)
class AffineGroup:
    """Tensors read together: a conv/linear (+ the batch norm folded into it) or a standalone batch norm."""
    name: str                       # the fx node of the layer
    kind: str                       # conv1d | conv2d | linear | bn
    weight: Optional[str]           # tensor names (state-dict keys); None when absent
    bias: Optional[str]
    bn: Optional[tuple[str, ...]] = None    # (weight|None, bias|None, running_mean, running_var)
    bn_eps: float = 1e-5
    conv_kwargs: tuple = ()         # stride, padding, dilation, groups
    fan_in: int = 1

    @property
    def tensors(self) -> tuple[str, ...]:
        names = [self.weight, self.bias] + list(self.bn or ())
        return tuple(n for n in names if n is not None)

    def op(self) -> Callable:
        kw = dict(self.conv_kwargs)
        if self.kind == "conv2d":
            return lambda x, w, b: F.conv2d(x, w, b, **kw)
        if self.kind == "conv1d":
            return lambda x, w, b: F.conv1d(x, w, b, **kw)
        return F.linear


@dataclass(frozen=True)
class Step:
    node: str                       # fx node name
    kind: str                       # input | affine | rule | output | skip
    args: tuple                     # fx-style args with node names replaced by ("node", name)
    kwargs: dict = field(default_factory=dict)
    fn: Optional[Callable] = None   # rule: (values, ctx) -> value
    group: Optional[str] = None
    # the linear (difference-network) pass, linear.py: what the node does to a *difference* of two runs
    lin: str = ""                   # act | maxpool | avg | struct | add | mul | python ("" for input/affine/...)
    call: Optional[Callable] = None # the node's own torch callable: call(*args, **kwargs) on tensors
    meta: Any = None                # ActSpec (act), pooling geometry (maxpool), n_of(tensor) (avg)


@dataclass(frozen=True)
class ActSpec:
    """A non-decreasing activation for the linear pass: piecewise linear (``kinks`` with the ``slopes``
    of the len(kinks)+1 pieces) or smooth (``deriv``: an even derivative, non-increasing in |x|)."""
    f: Callable
    ref_ulps: float = 0.0
    our_ulps: float = 0.0
    kinks: tuple = ()
    slopes: tuple = ()
    deriv: Optional[Callable] = None


@dataclass(frozen=True)
class RefinementPlan:
    steps: tuple[Step, ...]
    groups: dict                    # name -> AffineGroup, in network order
    input_node: str
    folded: tuple[str, ...]         # batch norms folded into the preceding layer
    u_ref: float

    def tensors(self) -> list[str]:
        return [t for g in self.groups.values() for t in g.tensors]


def _sigmoid_deriv(x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return s * (1.0 - s)


def _tanh_deriv(x: torch.Tensor) -> torch.Tensor:
    return 1.0 - torch.tanh(x) ** 2


def _relu6(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x, 0.0, 6.0)


_RELU = ActSpec(torch.relu, kinks=(0.0,), slopes=(0.0, 1.0))
_RELU6 = ActSpec(_relu6, kinks=(0.0, 6.0), slopes=(0.0, 1.0, 0.0))
_SIGMOID = ActSpec(torch.sigmoid, 8.0, 8.0, deriv=_sigmoid_deriv)
_TANH = ActSpec(torch.tanh, 8.0, 8.0, deriv=_tanh_deriv)


def _leaky(m: nn.Module) -> ActSpec:
    a = float(m.negative_slope)
    return ActSpec(lambda x: F.leaky_relu(x, a), 2.0, 1.0, kinks=(0.0,), slopes=(a, 1.0))


_MONOTONE_MODULES: dict[type, Callable[[nn.Module], ActSpec]] = {
    nn.ReLU: lambda m: _RELU,
    nn.ReLU6: lambda m: _RELU6,
    nn.Hardtanh: lambda m: ActSpec(lambda x: torch.clamp(x, m.min_val, m.max_val),
                                   kinks=(float(m.min_val), float(m.max_val)), slopes=(0.0, 1.0, 0.0)),
    nn.LeakyReLU: _leaky,
    nn.Sigmoid: lambda m: _SIGMOID,
    nn.Tanh: lambda m: _TANH,
    nn.Hardsigmoid: lambda m: ActSpec(F.hardsigmoid, 4.0, 4.0, kinks=(-3.0, 3.0), slopes=(0.0, 1.0 / 6.0, 0.0)),
}
_MONOTONE_FUNCTIONS: dict[Any, ActSpec] = {
    torch.relu: _RELU, F.relu: _RELU, F.relu6: _RELU6, torch.sigmoid: _SIGMOID, torch.tanh: _TANH,
}
_MONOTONE_METHODS = {"relu": _RELU, "sigmoid": _SIGMOID, "tanh": _TANH}
_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)
_SHAPE_METHODS = {"flatten", "view", "reshape", "contiguous", "squeeze", "unsqueeze"}


def _ref(a: Any) -> Any:
    if isinstance(a, torch.fx.Node):
        return ("node", a.name)
    if isinstance(a, (list, tuple)):
        return type(a)(_ref(x) for x in a)
    return a


def _refuse(node: torch.fx.Node, what: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(
        f"layer {node.name} ({what}) has no sound bound rule for progressive inference; "
        "evaluate without --progressive, or replace it with a supported layer (see docs/PROGRESSIVE.md)")


def _u_ref(gm: nn.Module) -> float:
    dtypes = {p.dtype for p in gm.parameters()} | {b.dtype for b in gm.buffers() if b.is_floating_point()}
    if dtypes <= {torch.float32}:
        return 2.0 ** -24
    if dtypes <= {torch.float64}:
        return 2.0 ** -53
    raise UnsupportedLayerError(f"progressive inference bounds float32 or float64 networks, not {sorted(map(str, dtypes))}; "
                                "convert the model to float32 before committing it")


def _bn_ok(m: nn.Module) -> bool:
    return isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.track_running_stats and m.running_mean is not None


def _bn_names(target: str, m: nn.Module) -> tuple:
    return (f"{target}.weight" if m.affine else None, f"{target}.bias" if m.affine else None,
            f"{target}.running_mean", f"{target}.running_var")


def build_plan(gm: torch.fx.GraphModule, fold_bn: bool = True) -> RefinementPlan:
    """The bound plan of a traced network; raises UnsupportedLayerError naming the first layer without a rule."""
    u_ref = _u_ref(gm)
    steps: list[Step] = []
    groups: dict[str, AffineGroup] = {}
    folded: dict[str, str] = {}          # bn node -> affine node it is folded into
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedLayerError(f"progressive inference needs a network with one input, this one has "
                                    f"{len(placeholders)}; wrap it in a module taking one tensor")
    for node in gm.graph.nodes:
        args, kwargs = _ref(node.args), {k: _ref(v) for k, v in node.kwargs.items()}
        if node.op == "placeholder":
            steps.append(Step(node.name, "input", ()))
        elif node.op == "output":
            steps.append(Step(node.name, "output", args))
        elif node.op == "get_attr":
            raise _refuse(node, f"parameter {node.target} used outside a layer")
        elif node.op == "call_module":
            if node.name in folded:
                steps.append(Step(node.name, "skip", args))
                continue
            m = gm.get_submodule(str(node.target))
            steps.append(_module_step(gm, node, m, args, groups, folded, fold_bn))
        elif node.op == "call_function":
            steps.append(_function_step(node, args, kwargs))
        elif node.op == "call_method":
            steps.append(_method_step(node, args, kwargs))
        else:
            raise _refuse(node, node.op)
    return RefinementPlan(tuple(steps), groups, placeholders[0].name, tuple(folded), u_ref)


def _module_step(gm, node, m, args, groups, folded, fold_bn=True) -> Step:
    target = str(node.target)
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
        if isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.padding_mode != "zeros":
            raise _refuse(node, f"{type(m).__name__} with padding_mode={m.padding_mode}")
        kind = "linear" if isinstance(m, nn.Linear) else ("conv2d" if isinstance(m, nn.Conv2d) else "conv1d")
        kw: tuple = ()
        if kind != "linear":
            kw = (("stride", m.stride), ("padding", m.padding), ("dilation", m.dilation), ("groups", m.groups))
        bn, eps = None, 1e-5
        users = list(node.users)
        if fold_bn and len(users) == 1 and users[0].op == "call_module":
            nxt = gm.get_submodule(str(users[0].target))
            if _bn_ok(nxt) and nxt.num_features == m.weight.shape[0]:
                # fold: the bound then sees one weight per output channel, not conv and BN widths compounded
                bn, eps = _bn_names(str(users[0].target), nxt), float(nxt.eps)
                folded[users[0].name] = node.name
        groups[node.name] = AffineGroup(node.name, kind, f"{target}.weight",
                                        f"{target}.bias" if m.bias is not None else None, bn, eps, kw,
                                        int(m.weight[0].numel()))
        return Step(node.name, "affine", args, group=node.name)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if not _bn_ok(m):
            raise _refuse(node, "batch norm without running statistics")
        groups[node.name] = AffineGroup(node.name, "bn", None, None, _bn_names(target, m), float(m.eps))
        return Step(node.name, "affine", args, group=node.name)
    for cls, make in _MONOTONE_MODULES.items():
        if type(m) is cls:
            if isinstance(m, nn.LeakyReLU) and m.negative_slope < 0:
                raise _refuse(node, f"LeakyReLU with negative slope {m.negative_slope}, not monotone")
            a = make(m)
            return Step(node.name, "rule", args, fn=lambda v, ctx, a=a: R.monotone(v[0], a.f, ctx, a.ref_ulps, a.our_ulps),
                        lin="act", call=a.f, meta=a)
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
        return Step(node.name, "rule", args, fn=lambda v, ctx, m=m: R.monotone(v[0], m, ctx),
                    lin="maxpool", call=m, meta=_pool_geometry(m))
    if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):
        ks = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * (2 if isinstance(m, nn.AvgPool2d) else 1)
        n = 1
        for k in ks:
            n *= int(k)
        return Step(node.name, "rule", args, fn=lambda v, ctx, m=m, n=n: R.positive_average(v[0], m, n, ctx),
                    lin="avg", call=m, meta=lambda t, n=n: n)
    if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        return Step(node.name, "rule", args,
                    fn=lambda v, ctx, m=m: R.positive_average(v[0], m, int(v[0].c[0, 0].numel()), ctx),
                    lin="avg", call=m, meta=lambda t: int(t[0, 0].numel()))
    if isinstance(m, nn.Flatten):
        return Step(node.name, "rule", args, fn=lambda v, ctx, m=m: R.structural([v[0]], lambda t: m(t[0])),
                    lin="struct", call=m)
    if isinstance(m, _IDENTITY_MODULES):
        return Step(node.name, "rule", args, fn=lambda v, ctx: v[0], lin="struct", call=lambda t: t)
    raise _refuse(node, type(m).__name__)


def _pool_geometry(m: nn.Module) -> Optional[dict]:
    """Kernel/stride of a max pool whose windows do not overlap (the linear pass selects the certain
    argmax of each window); None for overlapping or dilated windows (bounded as boxes there)."""
    dims = 2 if isinstance(m, nn.MaxPool2d) else 1

    def tup(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v,) * dims
    ks, st, dil = tup(m.kernel_size), tup(m.stride if m.stride is not None else m.kernel_size), tup(m.dilation)
    if any(d != 1 for d in dil) or any(s < k for s, k in zip(st, ks)) or m.return_indices:
        return None
    return {"dims": dims, "kernel_size": ks, "stride": st, "padding": tup(m.padding), "ceil_mode": bool(m.ceil_mode)}


def _is_box(v) -> bool:
    return isinstance(v, R.Box)


def _function_step(node, args, kwargs) -> Step:
    t = node.target
    if t in _MONOTONE_FUNCTIONS:
        a = _MONOTONE_FUNCTIONS[t]
        return Step(node.name, "rule", args, kwargs, fn=lambda v, ctx: R.monotone(v[0], a.f, ctx, a.ref_ulps, a.our_ulps),
                    lin="act", call=a.f, meta=a)
    if t in (operator.add, torch.add):
        if "alpha" in kwargs or len(args) > 2:
            raise _refuse(node, "torch.add with alpha")
        return Step(node.name, "rule", args, kwargs, fn=_add, lin="add", call=t)
    if t in (operator.mul, torch.mul):
        return Step(node.name, "rule", args, kwargs, fn=_mul, lin="mul", call=t)
    if t in (torch.flatten, torch.reshape):
        return Step(node.name, "rule", args, kwargs,
                    fn=lambda v, ctx, kw=kwargs: R.structural([v[0]], lambda ts: t(ts[0], *v[1:], **kw)),
                    lin="struct", call=t)
    if t is torch.cat:
        return Step(node.name, "rule", args, kwargs, fn=_cat, lin="struct", call=t)
    if t in (F.max_pool1d, F.max_pool2d):
        # functional form: windows bounded as boxes in the linear pass (meta None)
        return Step(node.name, "rule", args, kwargs, fn=lambda v, ctx, kw=kwargs: R.monotone(v[0], lambda x: t(x, *v[1:], **kw), ctx),
                    lin="maxpool", call=t)
    if t in (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d):
        return Step(node.name, "rule", args, kwargs, fn=lambda v, ctx, kw=kwargs: R.positive_average(
            v[0], lambda x: t(x, *v[1:], **kw), int(v[0].c[0, 0].numel()), ctx),
            lin="avg", call=t, meta=lambda x: int(x[0, 0].numel()))
    if t is torch.mean:
        return Step(node.name, "rule", args, kwargs, fn=lambda v, ctx, kw=kwargs: _mean(v, kw, ctx),
                    lin="avg", call=t, meta=lambda x, kw=kwargs, a=args: _mean_n(x, a, kw))
    if t in (operator.getitem, getattr):
        return Step(node.name, "rule", args, kwargs, fn=lambda v, ctx: _python_only(node, t, v), lin="python")
    raise _refuse(node, f"function {getattr(t, '__qualname__', t)}")


def _method_step(node, args, kwargs) -> Step:
    name = str(node.target)

    def call(obj, *a, **kw):
        return getattr(obj, name)(*a, **kw)
    if name in _MONOTONE_METHODS:
        a = _MONOTONE_METHODS[name]
        return Step(node.name, "rule", args, kwargs, fn=lambda v, ctx: R.monotone(v[0], a.f, ctx, a.ref_ulps, a.our_ulps),
                    lin="act", call=a.f, meta=a)
    if name in _SHAPE_METHODS:
        return Step(node.name, "rule", args, kwargs, fn=lambda v, ctx, kw=kwargs: R.structural(
            [v[0]], lambda ts: getattr(ts[0], name)(*v[1:], **kw)), lin="struct", call=call)
    if name == "size" or name == "dim":
        return Step(node.name, "rule", args, kwargs, fn=lambda v, ctx, kw=kwargs: getattr(v[0].c, name)(*v[1:], **kw),
                    lin="python")
    if name == "mean":
        return Step(node.name, "rule", args, kwargs, fn=lambda v, ctx, kw=kwargs: _mean(v, kw, ctx),
                    lin="avg", call=call, meta=lambda x, kw=kwargs, a=args: _mean_n(x, a, kw))
    raise _refuse(node, f"method .{name}()")


def _python_only(node, fn, v):
    if any(_is_box(x) for x in v):
        raise _refuse(node, f"{getattr(fn, '__name__', fn)} on a tensor")
    return fn(*v)


def _add(v, ctx):
    a, b = v[0], v[1]
    if _is_box(a) and _is_box(b):
        return R.add(a, b, ctx)
    if _is_box(a) and isinstance(b, (int, float)):
        return R.add_const(a, float(b), ctx)
    if _is_box(b) and isinstance(a, (int, float)):
        return R.add_const(b, float(a), ctx)
    if not _is_box(a) and not _is_box(b):
        return a + b
    raise UnsupportedLayerError("an addition of a tensor and a non-scalar has no bound rule; "
                                "evaluate without --progressive")


def _mul(v, ctx):
    a, b = v[0], v[1]
    if _is_box(a) and isinstance(b, (int, float)):
        return R.scale_const(a, float(b), ctx)
    if _is_box(b) and isinstance(a, (int, float)):
        return R.scale_const(b, float(a), ctx)
    if not _is_box(a) and not _is_box(b):
        return a * b
    raise UnsupportedLayerError("a product of two tensors has no bound rule in progressive inference; "
                                "evaluate without --progressive")


def _cat(v, ctx):
    boxes = list(v[0])
    dim = v[1] if len(v) > 1 else 0
    return R.structural(boxes, lambda ts: torch.cat(ts, dim))


def _mean_n(x: torch.Tensor, args, kw) -> int:
    """Terms per output of a mean (args as stored in the step: args[0] is the tensor)."""
    dims = args[1] if len(args) > 1 else kw.get("dim")
    keep = args[2] if len(args) > 2 else kw.get("keepdim", False)
    out = x.mean() if dims is None else x.mean(dims, keepdim=keep)
    return int(x.numel() // max(out.numel(), 1))


def _mean(v, kw, ctx):
    x = v[0]
    dims = v[1] if len(v) > 1 else kw.get("dim")
    keep = v[2] if len(v) > 2 else kw.get("keepdim", False)
    f = (lambda t: t.mean()) if dims is None else (lambda t: t.mean(dims, keepdim=keep))
    n = int(x.c.numel() // max(f(x.c).numel(), 1))
    return R.positive_average(x, f, n, ctx)
