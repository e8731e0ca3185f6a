"""The network definition: a graph of typed layers, stored without code.

A :class:`Graph` is what the catalog keeps for a version's architecture. It is
captured from an ``nn.Module`` (torch.fx where the model traces, the module
tree otherwise) and, when every node is a standard torch layer or a
whitelisted function, it can be rebuilt into a runnable module without the
user's class and without unpickling anything.

Node arguments reference other nodes as ``{"node": NAME}``; constants are
plain JSON. Edges are derived from those references, so they cannot
disagree with the arguments.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterator

#: node kinds (torch.fx opcodes; 'call_module' nodes are the layers)
PLACEHOLDER, CALL_MODULE, CALL_FUNCTION, CALL_METHOD, GET_ATTR, OUTPUT = (
    "placeholder", "call_module", "call_function", "call_method", "get_attr", "output",
)


@dataclass(frozen=True)
class Node:
    name: str                         # layer name: module path for layers ('features.0'), fx name otherwise
    kind: str                         # one of the kinds above
    op: str                           # 'Conv2d', 'ReLU', 'add', 'flatten', 'input', 'output', ...
    attrs: dict = field(default_factory=dict)   # constructor attributes (layers) or call kwargs
    args: tuple = ()                  # JSON-able; node references are {"node": name}
    n_params: int = 0
    param_shapes: dict = field(default_factory=dict)  # local tensor name -> shape (for shape checks)
    target: str = ""                  # call_function: 'operator.add' / 'torch.flatten' / 'F.relu'

    @property
    def is_layer(self) -> bool:
        return self.kind == CALL_MODULE

    def inputs(self) -> list[str]:
        return list(_refs(self.args)) + list(_refs(self.attrs if self.kind != CALL_MODULE else {}))

    def to_json(self) -> dict:
        return {
            "name": self.name, "kind": self.kind, "op": self.op, "attrs": self.attrs,
            "args": list(self.args), "n_params": self.n_params, "param_shapes": self.param_shapes,
            "target": self.target,
        }

    @staticmethod
    def from_json(d: dict) -> "Node":
        return Node(
            name=d["name"], kind=d["kind"], op=d["op"], attrs=dict(d.get("attrs", {})),
            args=tuple(d.get("args", ())), n_params=int(d.get("n_params", 0)),
            param_shapes={k: list(v) for k, v in d.get("param_shapes", {}).items()},
            target=str(d.get("target", "")),
        )


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if set(value) == {"node"}:
            yield value["node"]
            return
        for v in value.values():
            yield from _refs(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _refs(v)


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]           # topological order
    traced: bool                      # captured by torch.fx (edges are exact)
    rebuildable: bool                 # every node can be rebuilt from standard torch

    # -- structure ------------------------------------------------------------------
    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def index(self) -> dict[str, int]:
        return {n.name: i for i, n in enumerate(self.nodes)}

    def edges(self) -> list[tuple[int, int]]:
        """(src, dst) index pairs. Untraced graphs chain their layers in order."""
        idx = self.index()
        out: list[tuple[int, int]] = []
        for j, n in enumerate(self.nodes):
            for ref in n.inputs():
                if ref in idx:
                    out.append((idx[ref], j))
        return out

    def successors(self, name: str) -> list[str]:
        idx = self.index()
        i = idx[name]
        return [self.nodes[d].name for s, d in self.edges() if s == i]

    def predecessors(self, name: str) -> list[str]:
        idx = self.index()
        j = idx[name]
        return [self.nodes[s].name for s, d in self.edges() if d == j]

    @property
    def layers(self) -> list[Node]:
        return [n for n in self.nodes if n.is_layer]

    @property
    def n_params(self) -> int:
        return sum(n.n_params for n in self.nodes)

    # -- serialization ----------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "format": 1, "traced": self.traced, "rebuildable": self.rebuildable,
            "nodes": [n.to_json() for n in self.nodes],
        }

    def canonical(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()

    @staticmethod
    def from_json(d: dict | str) -> "Graph":
        if isinstance(d, str):
            d = json.loads(d)
        return Graph(
            nodes=tuple(Node.from_json(n) for n in d["nodes"]),
            traced=bool(d["traced"]), rebuildable=bool(d["rebuildable"]),
        )
