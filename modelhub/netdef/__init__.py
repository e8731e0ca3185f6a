"""Network definitions: capture from nn.Module, store as a graph, rebuild without code.

``Graph`` and ``Node`` (graph.py) need no torch; ``capture``, ``rebuild`` and
``build_layer`` do, so they are imported on first use (PEP 562): reading a
stored graph (`dlv desc`, `dlv diff`) must not pay for importing torch.
"""
import importlib

from .graph import Graph, Node

_TORCH_EXPORTS = {"capture": ".capture", "rebuild": ".rebuild", "build_layer": ".rebuild"}

__all__ = ["Graph", "Node", "capture", "rebuild", "build_layer"]


def __getattr__(name: str):
    if name not in _TORCH_EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # All at once: importing the submodule `rebuild` binds the package attribute `rebuild`
    # to that module, which the function of the same name must then replace.
    for export, module in _TORCH_EXPORTS.items():
        globals()[export] = getattr(importlib.import_module(module, __name__), export)
    return globals()[name]
