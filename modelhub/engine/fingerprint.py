"""Content fingerprints of stages and prefixes: reuse keys that ignore names.

A stage's fingerprint covers, for each module inside it in order, the layer
type, its attributes (``extra_repr``) and the dtype, shape and bytes of every
parameter and buffer; traced stages add their graph with node references
replaced by positions. Two candidates whose first k stages hash equally
compute the same function on the same preprocessed input, whatever the
layers are called.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from torch import fx, nn

from .chain import Stage


def _h() -> "hashlib._Hash":
    return hashlib.blake2b(digest_size=20)


def tensor_digest(t: torch.Tensor) -> str:
    t = t.detach().to("cpu").contiguous().reshape(-1)
    h = _h()
    h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def module_fingerprint(module: nn.Module) -> str:
    h = _h()
    for sub in module.modules():
        if isinstance(sub, fx.GraphModule):
            continue  # its layers follow as submodules; its graph is hashed by stage_fingerprint
        h.update(f"<{type(sub).__module__}.{type(sub).__qualname__}|{sub.extra_repr()}>".encode())
        for kind, tensors in (("p", sub.named_parameters(recurse=False)), ("b", sub.named_buffers(recurse=False))):
            for _, t in tensors:
                if t is None:
                    continue
                h.update(f"{kind}:{tensor_digest(t)};".encode())
    return h.hexdigest()


def _graph_structure(gm: fx.GraphModule) -> list[Any]:
    index: dict[fx.Node, int] = {}
    modules = dict(gm.named_modules())
    out: list[Any] = []

    def arg(a: Any) -> Any:
        if isinstance(a, fx.Node):
            return {"n": index[a]}
        if isinstance(a, (list, tuple)):
            return [arg(x) for x in a]
        if isinstance(a, dict):
            return {str(k): arg(v) for k, v in a.items()}
        return repr(a)

    for i, n in enumerate(gm.graph.nodes):
        index[n] = i
        if n.op == "call_module":
            target = module_fingerprint(modules[n.target])
        elif n.op == "get_attr":
            obj = gm
            for part in str(n.target).split("."):
                obj = getattr(obj, part)
            target = tensor_digest(obj) if isinstance(obj, torch.Tensor) else repr(obj)
        elif callable(n.target):
            target = f"{getattr(n.target, '__module__', '')}.{getattr(n.target, '__qualname__', repr(n.target))}"
        else:
            target = str(n.target)
        out.append([n.op, target if n.op != "placeholder" else "", arg(n.args), arg(n.kwargs)])
    return out


def stage_fingerprint(stage: Stage) -> str:
    h = _h()
    m = stage.module
    if isinstance(m, fx.GraphModule):
        h.update(json.dumps(_graph_structure(m), sort_keys=True).encode())
    else:
        h.update(module_fingerprint(m).encode())
    return h.hexdigest()


def chain_hash(parent: str, stage_fp: str) -> str:
    h = _h()
    h.update(f"{parent}/{stage_fp}".encode())
    return h.hexdigest()


def input_fingerprint(preprocessing: dict[str, Any], record_shape: tuple[int, ...], dtype: str) -> str:
    """The root of every prefix: what the first stage sees (preprocessing included)."""
    h = _h()
    h.update(json.dumps({"pre": preprocessing, "shape": list(record_shape), "dtype": dtype},
                        sort_keys=True).encode())
    return h.hexdigest()
