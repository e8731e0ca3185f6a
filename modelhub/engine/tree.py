"""The multi-model graph: one tree of frozen prefixes across all candidates.

Nodes are keyed by content (input fingerprint, then the chain of stage
fingerprints), so candidates that share a frozen prefix share its nodes, and
the output of each node is computed at most once per record.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .chain import Stage, join_stages
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

    def add_chain(self, root_key: str, pre: Preprocessing, stages: list[Stage],
                  fingerprints: list[str] | None = None) -> list[str]:
        """Insert a candidate's frozen stages; returns the node keys from the root down.
        ``fingerprints``: the stages' stage_fingerprint values when already known."""
        if root_key not in self.nodes:
            self.nodes[root_key] = TreeNode(root_key, 0, None, None, root_key, pre, label="<input>")
            self.roots.append(root_key)
        keys = [root_key]
        for depth, stage in enumerate(stages, start=1):
            fp = fingerprints[depth - 1] if fingerprints is not None else stage_fingerprint(stage)
            key = chain_hash(keys[-1], fp)
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

    def compress(self, keep: set[str]) -> None:
        """Keep only the roots, ``keep`` (the nodes candidates read, nodes with stored features)
        and branch points; every other node is folded into its child, whose stage then runs from
        the nearest kept ancestor. Keys stay the fine-grained content keys, so features stored by
        any earlier query, whatever it kept, are still found."""
        kept = set(keep) | set(self.roots) | {k for k, n in self.nodes.items() if len(n.children) != 1}
        nodes: dict[str, TreeNode] = {}
        for key in sorted(self.nodes, key=lambda k: self.nodes[k].depth):
            node = self.nodes[key]
            if key not in kept:
                continue
            if node.parent is None:
                nodes[key] = TreeNode(key, 0, None, None, node.root, node.preprocessing, label=node.label)
                continue
            chain, at = [], key
            while True:
                chain.append(self.nodes[at].stage)
                at = self.nodes[at].parent  # type: ignore[assignment]
                if at in kept:
                    break
            stage = join_stages(chain[::-1])  # type: ignore[arg-type]
            nodes[key] = TreeNode(key, node.depth, at, stage, node.root, node.preprocessing, label=node.label)
            nodes[at].children.append(key)
        self.nodes = nodes
