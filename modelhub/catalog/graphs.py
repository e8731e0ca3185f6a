"""Network definitions (tables graphs, graph_nodes, graph_edges), shared between versions
by content hash."""
from __future__ import annotations

from dataclasses import dataclass

import duckdb


@dataclass(frozen=True)
class GraphNodeRow:
    """One node of a stored graph, in topological order (``idx``)."""
    idx: int
    name: str
    kind: str
    op: str
    attrs_json: str
    n_params: int


@dataclass(frozen=True)
class NewGraph:
    """What :func:`insert_graph` stores: the canonical JSON plus its nodes and edges for SQL."""
    graph_hash: str
    traced: bool
    rebuildable: bool
    n_layers: int
    definition: str
    nodes: tuple[GraphNodeRow, ...]
    edges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class MissingGraph:
    """A version naming a graph the catalog lacks (fsck)."""
    version_id: str
    graph_hash: str


def definition_of_version(con: duckdb.DuckDBPyConnection, version_id: str) -> str | None:
    """The canonical JSON of a version's network, or None when it was committed without one."""
    row = con.execute(
        "SELECT g.definition FROM versions v JOIN graphs g USING (graph_hash) WHERE v.id = ?", [version_id]
    ).fetchone()
    return row[0] if row else None


def has_graph(con: duckdb.DuckDBPyConnection, graph_hash: str) -> bool:
    return con.execute("SELECT 1 FROM graphs WHERE graph_hash = ?", [graph_hash]).fetchone() is not None


def insert_graph(con: duckdb.DuckDBPyConnection, g: NewGraph) -> None:
    con.execute("INSERT INTO graphs VALUES (?, ?, ?, ?, ?)",
                [g.graph_hash, g.traced, g.rebuildable, g.n_layers, g.definition])
    con.executemany(
        "INSERT INTO graph_nodes VALUES (?, ?, ?, ?, ?, ?, ?)",
        [[g.graph_hash, n.idx, n.name, n.kind, n.op, n.attrs_json, n.n_params] for n in g.nodes],
    )
    if g.edges:
        con.executemany("INSERT INTO graph_edges VALUES (?, ?, ?)", [[g.graph_hash, s, d] for s, d in g.edges])


def missing_graphs(con: duckdb.DuckDBPyConnection) -> list[MissingGraph]:
    return [MissingGraph(v, g) for v, g in con.execute(
        "SELECT id, graph_hash FROM versions WHERE graph_hash IS NOT NULL AND graph_hash NOT IN (SELECT graph_hash FROM graphs)"
    ).fetchall()]
