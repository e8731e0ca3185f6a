"""Which layers and functions a stored graph may name when it is rebuilt.

Rebuilding never imports a module named by the repository: layers are
looked up as attributes of ``torch.nn`` and functions in three fixed
namespaces (``operator``, ``torch``, ``torch.nn.functional``), plus
``getattr`` for the few tensor attributes a device-correct forward reads
(``torch.arange(n, device=ids.device)``). A graph naming anything else is
stored for display and queries but not rebuilt.
"""
from __future__ import annotations

import builtins
import operator
import types
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

_NAMESPACES: dict[str, Any] = {"operator": operator, "torch": torch, "F": F}
# what a rebuilt graph may read with getattr: plain tensor metadata, nothing that reaches
# further objects (a class, a module, a function) a stored graph could then call
TENSOR_ATTRIBUTES = frozenset({"device", "dtype", "shape", "ndim", "is_cuda"})
GETATTR = "builtins.getattr"


def reads_tensor_attribute(fn: Callable, args: tuple) -> bool:
    """Whether a call is ``getattr(x, NAME)`` with NAME among TENSOR_ATTRIBUTES."""
    return fn is builtins.getattr and len(args) == 2 and args[1] in TENSOR_ATTRIBUTES


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


# operator: arithmetic, comparison and indexing only. attrgetter, methodcaller and call would
# let a stored graph walk from a tensor to its class, a function's globals and os.system.
_OPERATOR = frozenset({
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "neg", "pos", "abs", "invert",
    "and_", "or_", "xor", "lshift", "rshift", "not_", "eq", "ne", "lt", "le", "gt", "ge", "getitem",
    "iadd", "isub", "imul", "itruediv", "ifloordiv", "imod", "ipow", "imatmul", "iand", "ior", "ixor",
})
# torch: its C operators and torch.functional's -- never I/O (save, load, from_file), compile,
# or the setters of process-wide state (set_default_dtype, set_num_threads, manual_seed)
_TORCH_PY_MODULES = frozenset({"torch.functional"})
_TORCH_DENIED = frozenset({"from_file", "manual_seed", "seed", "load", "save", "compile", "import_ir_module",
                           "import_ir_module_from_buffer", "parse_ir", "fork", "wait", "init_num_threads"})
# tensor methods that leave torch: to numpy (tofile, dump write files) or to raw storage (from_file)
_METHODS_DENIED = frozenset({"numpy", "storage", "untyped_storage", "share_memory_", "tolist"})


def _allowed(prefix: str, name: str, fn: Any) -> bool:
    if not name or name.startswith("_") or not callable(fn):
        return False
    if prefix == "operator":
        return name in _OPERATOR
    if prefix == "torch":
        if name in _TORCH_DENIED or name.startswith("set_"):
            return False
        return isinstance(fn, types.BuiltinFunctionType) or getattr(fn, "__module__", None) in _TORCH_PY_MODULES
    return True         # torch.nn.functional: functions of tensors


def function_name(fn: Callable) -> str | None:
    """'operator.add', 'torch.flatten', 'F.relu' -- or None if not whitelisted."""
    name = getattr(fn, "__name__", None)
    if not name:
        return None
    for prefix, ns in _NAMESPACES.items():
        if getattr(ns, name, None) is fn and _allowed(prefix, name, fn):
            return f"{prefix}.{name}"
    return None


def resolve_function(qualified: str) -> Callable | None:
    if qualified == GETATTR:
        return builtins.getattr      # rebuild checks the attribute against TENSOR_ATTRIBUTES
    prefix, _, name = qualified.partition(".")
    ns = _NAMESPACES.get(prefix)
    fn = getattr(ns, name, None) if ns is not None else None
    return fn if _allowed(prefix, name, fn) else None


def method_allowed(name: str) -> bool:
    """Whether a stored graph may call ``x.NAME(...)``: a public method of torch.Tensor that
    keeps its values inside torch."""
    return not name.startswith("_") and name not in _METHODS_DENIED and callable(getattr(torch.Tensor, name, None))
