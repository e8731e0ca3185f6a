"""Which layers and functions a stored graph may name when it is rebuilt.

Rebuilding never imports a module named by the repository: layers are
looked up as attributes of ``torch.nn`` and functions in three fixed
namespaces (``operator``, ``torch``, ``torch.nn.functional``). A graph
naming anything else is stored for display and queries but not rebuilt.
"""
from __future__ import annotations

import operator
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

_NAMESPACES: dict[str, Any] = {"operator": operator, "torch": torch, "F": F}


def is_standard_layer(cls: type) -> bool:
    return (
        isinstance(cls, type)
        and issubclass(cls, nn.Module)
        and cls.__module__.startswith("torch.nn.")
        and getattr(nn, cls.__name__, None) is cls
    )


def layer_class(op: str) -> type[nn.Module] | None:
    cls = getattr(nn, op, None)
    return cls if cls is not None and is_standard_layer(cls) else None


def function_name(fn: Callable) -> str | None:
    """'operator.add', 'torch.flatten', 'F.relu' -- or None if not whitelisted."""
    name = getattr(fn, "__name__", None)
    if not name or name.startswith("_"):
        return None
    for prefix, ns in _NAMESPACES.items():
        if getattr(ns, name, None) is fn:
            return f"{prefix}.{name}"
    return None


def resolve_function(qualified: str) -> Callable | None:
    prefix, _, name = qualified.partition(".")
    ns = _NAMESPACES.get(prefix)
    if ns is None or not name or name.startswith("_"):
        return None
    fn = getattr(ns, name, None)
    return fn if callable(fn) else None
