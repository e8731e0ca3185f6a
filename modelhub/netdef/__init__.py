"""Network definitions: capture from nn.Module, store as a graph, rebuild without code."""
from .capture import capture
from .graph import Graph, Node
from .rebuild import build_layer, rebuild

__all__ = ["Graph", "Node", "capture", "rebuild", "build_layer"]
