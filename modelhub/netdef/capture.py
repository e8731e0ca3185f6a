"""Capture an ``nn.Module``'s architecture as a :class:`Graph`.

torch.fx's symbolic tracer gives exact dataflow: standard ``torch.nn``
layers stay leaves (``call_module``), the user's Python glue becomes
functions and tensor methods. Models that do not trace (data-dependent
control flow) fall back to the module tree: the leaf modules in
registration order, chained, flagged ``traced=False`` and not rebuildable.
"""
from __future__ import annotations

import inspect
import math
from typing import Any

import torch
import torch.fx
from torch import nn

from .graph import CALL_FUNCTION, CALL_METHOD, CALL_MODULE, GET_ATTR, OUTPUT, PLACEHOLDER, Graph, Node
from .ops import GETATTR, function_name, is_standard_layer, method_allowed, reads_tensor_attribute

_SKIP_CTOR_PARAMS = {"self", "device", "dtype", "factory_kwargs"}


def capture(module: nn.Module) -> Graph:
    try:
        gm = torch.fx.symbolic_trace(module)
    except Exception:  # noqa: BLE001 - any tracing failure means "use the module tree"
        return _capture_module_tree(module)
    return _capture_fx(module, gm)


# -- torch.fx path ------------------------------------------------------------------------

def _capture_fx(module: nn.Module, gm: torch.fx.GraphModule) -> Graph:
    nodes: list[Node] = []
    rebuildable = True
    names: dict[str, str] = {}  # fx node name -> our node name
    for fx_node in gm.graph.nodes:
        if fx_node.op == CALL_MODULE:
            sub = gm.get_submodule(fx_node.target)
            name = str(fx_node.target)
            attrs, ok = layer_attributes(sub)
            rebuildable &= ok
            node = Node(
                name=name, kind=CALL_MODULE, op=type(sub).__name__, attrs=attrs,
                args=_encode_args(fx_node.args, names), n_params=_n_params(sub),
                param_shapes={k: list(v.shape) for k, v in sub.state_dict().items()},
            )
        elif fx_node.op == PLACEHOLDER:
            name = fx_node.name
            node = Node(name=name, kind=PLACEHOLDER, op="input")
        elif fx_node.op == OUTPUT:
            name = "output"
            node = Node(name=name, kind=OUTPUT, op="output", args=_encode_args(fx_node.args, names))
        elif fx_node.op == CALL_FUNCTION:
            name = fx_node.name
            fname = GETATTR if reads_tensor_attribute(fx_node.target, fx_node.args) else function_name(fx_node.target)
            rebuildable &= fname is not None
            node = Node(
                name=name, kind=CALL_FUNCTION, op=getattr(fx_node.target, "__name__", "?"),
                target=fname or "", attrs=_encode_value(dict(fx_node.kwargs), names), args=_encode_args(fx_node.args, names),
            )
        elif fx_node.op == CALL_METHOD:
            name = fx_node.name
            rebuildable &= method_allowed(str(fx_node.target))
            node = Node(
                name=name, kind=CALL_METHOD, op=str(fx_node.target),
                attrs=_encode_value(dict(fx_node.kwargs), names), args=_encode_args(fx_node.args, names),
            )
        else:  # get_attr: a raw parameter/buffer used outside a layer
            name = fx_node.name
            rebuildable = False
            tensor = _get_attr(gm, str(fx_node.target))
            node = Node(
                name=name, kind=GET_ATTR, op="get_attr", attrs={"target": str(fx_node.target)},
                n_params=int(tensor.numel()) if isinstance(tensor, torch.Tensor) else 0,
            )
        names[fx_node.name] = name
        nodes.append(node)
    return Graph(nodes=tuple(nodes), traced=True, rebuildable=bool(rebuildable))


def _get_attr(gm: nn.Module, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _encode_args(args: tuple, names: dict[str, str]) -> tuple:
    return tuple(_encode_value(a, names) for a in args)


def _encode_value(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, torch.fx.Node):
        return {"node": names[value.name]}
    if isinstance(value, (list, tuple)):
        return [_encode_value(v, names) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode_value(v, names) for k, v in value.items()}
    if isinstance(value, slice):
        return {"slice": [_encode_value(value.start, names), _encode_value(value.stop, names),
                          _encode_value(value.step, names)]}
    if value is Ellipsis:
        return {"ellipsis": True}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return {"repr": repr(value)}  # kept for display; makes the graph non-rebuildable on decode


# -- layers ---------------------------------------------------------------------------------

def layer_attributes(layer: nn.Module) -> tuple[dict, bool]:
    """Constructor arguments of a layer, read back from its attributes.

    Returns (attrs, rebuildable). A layer is rebuildable when it is a
    standard ``torch.nn`` class and constructing it from ``attrs`` yields
    the same parameter/buffer shapes (checked on the meta device, so even a
    huge layer costs no memory).
    """
    attrs: dict[str, Any] = {}
    try:
        params = inspect.signature(type(layer).__init__).parameters
    except (TypeError, ValueError):
        params = {}
    for pname, p in params.items():
        if pname in _SKIP_CTOR_PARAMS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if not hasattr(layer, pname):
            continue
        value = getattr(layer, pname)
        if isinstance(value, torch.Tensor) or value is None and pname == "bias":
            attrs[pname] = value is not None  # e.g. Conv2d(bias=...) is stored as a Parameter or None
        elif isinstance(value, (bool, int, float, str)) or value is None:
            attrs[pname] = value
        elif isinstance(value, (tuple, list)) and all(isinstance(v, (bool, int, float, str)) for v in value):
            attrs[pname] = list(value)
    if not is_standard_layer(type(layer)):
        return attrs, False
    return attrs, _rebuilds_same(layer, attrs)


def _rebuilds_same(layer: nn.Module, attrs: dict) -> bool:
    try:
        with torch.device("meta"):
            clone = type(layer)(**attrs)
    except Exception:  # noqa: BLE001 - any constructor failure just means "not rebuildable"
        return False
    want = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in clone.state_dict().items()}
    return want == got


def _n_params(layer: nn.Module) -> int:
    return int(sum(p.numel() for p in layer.parameters()))


# -- module-tree fallback ----------------------------------------------------------------------

def _capture_module_tree(module: nn.Module) -> Graph:
    nodes: list[Node] = [Node(name="x", kind=PLACEHOLDER, op="input")]
    prev = "x"
    for path, sub in module.named_modules():
        if path == "" or any(True for _ in sub.children()):
            continue
        attrs, _ = layer_attributes(sub)
        nodes.append(Node(
            name=path, kind=CALL_MODULE, op=type(sub).__name__, attrs=attrs,
            args=({"node": prev},), n_params=_n_params(sub),
            param_shapes={k: list(v.shape) for k, v in sub.state_dict().items()},
        ))
        prev = path
    # Parameters registered directly on non-leaf modules are not in any node.
    nodes.append(Node(name="output", kind=OUTPUT, op="output", args=({"node": prev},)))
    return Graph(nodes=tuple(nodes), traced=False, rebuildable=False)


__all__ = ["capture", "layer_attributes"]
