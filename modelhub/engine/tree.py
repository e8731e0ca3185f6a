"""The multi-model graph: one tree of frozen prefixes across all candidates.

Nodes are keyed by content (input fingerprint, then the chain of stage
fingerprints), so candidates that share a frozen prefix share its nodes, and
the output of each node is computed at most once per record.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .chain import Stage
from .data import Preprocessing
from .fingerprint import chain_hash, stage_fingerprint


@dataclass(eq=False)
class TreeNode:
    key: str
    depth: int                      # number of stages from the input
    parent: str | None
    stage: Stage | None             # the module computing this node from its parent (None at a root)
    root: str
    preprocessing: Preprocessing
    children: list[str] = field(default_factory=list)
    label: str = ""                 # display: the stage name of the first candidate that added it


class PrefixTree:
    def __init__(self) -> None:
        self.nodes: dict[str, TreeNode] = {}
        self.roots: list[str] = []

    def add_chain(self, root_key: str, pre: Preprocessing, stages: list[Stage]) -> list[str]:
        """Insert a candidate's frozen stages; returns the node keys from the root down."""
        if root_key not in self.nodes:
            self.nodes[root_key] = TreeNode(root_key, 0, None, None, root_key, pre, label="<input>")
            self.roots.append(root_key)
        keys = [root_key]
        for depth, stage in enumerate(stages, start=1):
            key = chain_hash(keys[-1], stage_fingerprint(stage))
            if key not in self.nodes:
                self.nodes[key] = TreeNode(key, depth, keys[-1], stage, root_key, pre, label=stage.name)
                self.nodes[keys[-1]].children.append(key)
            keys.append(key)
        return keys

    def path(self, key: str) -> list[str]:
        """Keys from the root to ``key``, both included."""
        out = [key]
        while self.nodes[out[-1]].parent is not None:
            out.append(self.nodes[out[-1]].parent)  # type: ignore[arg-type]
        return out[::-1]

    def is_root(self, key: str) -> bool:
        return self.nodes[key].parent is None
