"""Rebuild a runnable ``nn.Module`` from a stored :class:`Graph`.

The result is a ``torch.fx.GraphModule`` whose ``state_dict`` keys equal
the captured model's, so committed weights load into it directly. Nothing
is imported or unpickled: layers come from ``torch.nn`` by class name and
functions from the whitelist in :mod:`.ops`.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.fx
from torch import nn

from ..errors import GraphError
from .graph import CALL_FUNCTION, CALL_METHOD, CALL_MODULE, OUTPUT, PLACEHOLDER, Graph
from .ops import GETATTR, TENSOR_ATTRIBUTES, layer_class, method_allowed, resolve_function


def rebuild(graph: Graph) -> torch.fx.GraphModule:
    if not graph.traced:
        raise GraphError(
            "this version's network was captured from the module tree (the model does not "
            "trace with torch.fx), so it cannot be rebuilt; pass the model class to "
            "checkout (repo.checkout(ref, model_class=...)) to load the weights into it"
        )
    modules: dict[str, nn.Module] = {}
    fx_graph = torch.fx.Graph()
    env: dict[str, torch.fx.Node] = {}
    for node in graph.nodes:
        if node.kind == PLACEHOLDER:
            env[node.name] = fx_graph.placeholder(node.name)
        elif node.kind == CALL_MODULE:
            modules[node.name] = build_layer(node.op, node.attrs, node.name)
            env[node.name] = fx_graph.call_module(node.name, _decode(node.args, env))
        elif node.kind == CALL_FUNCTION:
            fn = resolve_function(node.target)
            if fn is None:
                raise GraphError(
                    f"layer {node.name!r} calls {node.op!r}, which is not a standard torch "
                    "function; pass the model class to checkout to load the weights into it"
                )
            args = _decode(node.args, env)
            if node.target == GETATTR and not (len(args) == 2 and args[1] in TENSOR_ATTRIBUTES):
                raise GraphError(
                    f"node {node.name!r} reads attribute {args[1:]!r}; a stored graph may read only "
                    f"{', '.join(sorted(TENSOR_ATTRIBUTES))} -- pass the model class to checkout instead"
                )
            env[node.name] = fx_graph.call_function(fn, args, _decode(node.attrs, env))
        elif node.kind == CALL_METHOD:
            if not method_allowed(node.op):
                raise GraphError(
                    f"node {node.name!r} calls method {node.op!r}, which a stored graph may not call; "
                    "pass the model class to checkout to load the weights into it"
                )
            env[node.name] = fx_graph.call_method(node.op, _decode(node.args, env), _decode(node.attrs, env))
        elif node.kind == OUTPUT:
            (result,) = _decode(node.args, env)
            fx_graph.output(result)
        else:
            raise GraphError(
                f"node {node.name!r} reads a raw parameter ({node.kind}); such graphs cannot be "
                "rebuilt -- pass the model class to checkout to load the weights into it"
            )
    try:
        return torch.fx.GraphModule(modules, fx_graph, class_name="RebuiltModel")
    except Exception as exc:  # noqa: BLE001
        raise GraphError(f"the stored network does not form a valid graph ({exc}); it cannot be rebuilt") from None


def build_layer(op: str, attrs: dict, name: str = "?") -> nn.Module:
    cls = layer_class(op)
    if cls is None:
        raise GraphError(
            f"layer {name!r} has type {op!r}, which is not a standard torch.nn layer; "
            "pass the model class to checkout to load the weights into it"
        )
    try:
        return cls(**attrs)
    except Exception as exc:  # noqa: BLE001
        raise GraphError(f"cannot rebuild layer {name!r} ({op}) from {attrs}: {exc}") from None


def _decode(value: Any, env: dict[str, torch.fx.Node]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"node"}:
            return env[value["node"]]
        if set(value) == {"slice"}:
            return slice(*(_decode(v, env) for v in value["slice"]))
        if set(value) == {"ellipsis"}:
            return Ellipsis
        if set(value) == {"dtype"}:
            return getattr(torch, value["dtype"])
        if set(value) == {"float"}:
            return float(value["float"])
        if set(value) == {"repr"}:
            raise GraphError(f"the stored network holds an opaque constant {value['repr']}; it cannot be rebuilt")
        return {k: _decode(v, env) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_decode(v, env) for v in value)
    return value
