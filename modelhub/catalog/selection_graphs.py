"""The stored structure of graphs (graph_nodes, graph_edges), read for structural predicates
such as ``m["conv*"].next has POOL``, which are evaluated outside SQL."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import duckdb


@dataclass(frozen=True)
class StoredNode:
    """One node of a stored graph; ``attrs`` is the JSON text, parsed only by who needs it."""
    idx: int
    name: str
    kind: str
    op: str
    attrs: str


@dataclass(frozen=True)
class GraphStructure:
    """A graph's nodes in index order and its edges as (source idx, destination idx)."""
    nodes: tuple[StoredNode, ...]
    edges: tuple[tuple[int, int], ...]


def graph_structures(con: duckdb.DuckDBPyConnection, graph_hashes: Iterable[str]) -> dict[str, GraphStructure]:
    """The structure of each graph in ``graph_hashes`` (two queries for all of them; a hash the
    catalog lacks gets an empty structure)."""
    wanted = list(dict.fromkeys(graph_hashes))
    nodes: dict[str, list[StoredNode]] = {h: [] for h in wanted}
    for h, idx, name, kind, op, attrs in con.execute(
            "SELECT graph_hash, idx, name, kind, op, attrs FROM graph_nodes "
            "WHERE graph_hash IN (SELECT unnest($hashes)) ORDER BY graph_hash, idx",
            {"hashes": wanted}).fetchall():
        nodes[h].append(StoredNode(idx, name, kind, op, attrs))
    edges: dict[str, list[tuple[int, int]]] = {h: [] for h in wanted}
    for h, src, dst in con.execute(
            "SELECT graph_hash, src, dst FROM graph_edges WHERE graph_hash IN (SELECT unnest($hashes))",
            {"hashes": wanted}).fetchall():
        edges[h].append((src, dst))
    return {h: GraphStructure(tuple(nodes[h]), tuple(edges[h])) for h in wanted}
