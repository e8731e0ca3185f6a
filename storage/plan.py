"""The storage plan: which tensor is stored whole and which as a delta of which.

The *matrix storage graph* (ModelHub, Miao et al. ICDE 2017) has one vertex per
stored unit — here a tensor of a snapshot (its segments always travel together
because the delta is applied to the bit pattern before segmentation) — plus the
empty vertex 0. An edge (0, v) materializes v; an edge (u, v) stores one as a
delta of the other. Every edge has a storage cost (compressed bytes) and a
recreation cost (work to rebuild the tensor from its neighbour). Our deltas
(XOR, zigzag subtraction) are invertible both ways at the same size, so edges
are undirected, as in ModelHub; a plan is a spanning tree rooted at 0 and a
vertex is rebuilt along its tree path from 0.

A snapshot's recreation cost is the sum (scheme ``independent``: tensors are
rebuilt one after the other) or the maximum (``parallel``) of its vertices' path
costs. The constraint: every snapshot costs at most ``alpha`` times its cost in
the shortest-path tree (SPT). The minimum spanning tree (MST) minimizes
storage, the SPT recreation; PAS-MT repairs the MST by swaps, PAS-PT grows a
tree from 0 under per-vertex budgets; :func:`best_plan` returns the cheapest
feasible of them (the SPT is always feasible for alpha >= 1).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

SCHEMES = ("independent", "parallel")
_EPS = 1e-9


@dataclass(frozen=True)
class Edge:
    u: int
    v: int
    storage: float
    recreation: float

    def other(self, x: int) -> int:
        return self.v if x == self.u else self.u


@dataclass(frozen=True)
class StorageGraph:
    n: int                                  # vertices 1..n; 0 is the empty vertex
    edges: tuple[Edge, ...]
    groups: tuple[tuple[int, ...], ...]     # snapshot -> its vertices (may share vertices)

    def adjacency(self) -> list[list[Edge]]:
        adj: list[list[Edge]] = [[] for _ in range(self.n + 1)]
        for e in self.edges:
            adj[e.u].append(e)
            adj[e.v].append(e)
        return adj


@dataclass(frozen=True)
class StoragePlan:
    algorithm: str
    parent_edge: tuple[Optional[Edge], ...]   # per vertex (None for 0)
    storage: float
    recreation: tuple[float, ...]             # per vertex: path cost from 0
    group_cost: tuple[float, ...]             # per snapshot under the scheme

    def parent(self, v: int) -> int:
        e = self.parent_edge[v]
        return -1 if e is None else e.other(v)


def check_graph(g: StorageGraph) -> None:
    for e in g.edges:
        if not (0 <= e.u <= g.n and 0 <= e.v <= g.n) or e.u == e.v:
            raise ValueError(f"edge {e} does not join two distinct vertices of 0..{g.n}")
        if e.storage < 0 or e.recreation < 0:
            raise ValueError(f"edge {e} has a negative cost")
    for grp in g.groups:
        for v in grp:
            if not 1 <= v <= g.n:
                raise ValueError(f"snapshot group names vertex {v}, outside 1..{g.n}")


def group_costs(g: StorageGraph, rc: Sequence[float], scheme: str) -> tuple[float, ...]:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; use one of {SCHEMES}")
    if scheme == "independent":
        return tuple(sum(rc[v] for v in grp) for grp in g.groups)
    return tuple(max((rc[v] for v in grp), default=0.0) for grp in g.groups)


def make_plan(g: StorageGraph, parent_edge: Sequence[Optional[Edge]], scheme: str, algorithm: str) -> StoragePlan:
    """Evaluate a tree given by each vertex's parent edge (must reach 0 from every vertex)."""
    rc: list[Optional[float]] = [None] * (g.n + 1)
    rc[0] = 0.0

    def cost(v: int) -> float:
        chain = []
        while rc[v] is None:
            chain.append(v)
            e = parent_edge[v]
            if e is None or len(chain) > g.n:
                raise ValueError(f"vertex {v} is not connected to the empty vertex in plan {algorithm}")
            v = e.other(v)
        acc = rc[v]
        for x in reversed(chain):
            acc += parent_edge[x].recreation
            rc[x] = acc
        return acc

    for v in range(1, g.n + 1):
        cost(v)
    storage = sum(e.storage for e in parent_edge[1:])
    rcs = tuple(float(x) for x in rc)
    return StoragePlan(algorithm, tuple(parent_edge), storage, rcs, group_costs(g, rcs, scheme))


def _tree_search(g: StorageGraph, key) -> list[Optional[Edge]]:
    """Prim/Dijkstra skeleton: grow from 0, always taking the smallest key(dist_u, edge)."""
    adj = g.adjacency()
    parent: list[Optional[Edge]] = [None] * (g.n + 1)
    dist = [0.0] * (g.n + 1)
    done = [False] * (g.n + 1)
    heap: list = [(0.0, 0, 0, -1, None)]
    counter = 1
    while heap:
        _, _, v, _, e = heapq.heappop(heap)
        if done[v]:
            continue
        done[v] = True
        parent[v] = e
        if e is not None:
            dist[v] = dist[e.other(v)] + e.recreation
        for f in adj[v]:
            w = f.other(v)
            if not done[w]:
                heapq.heappush(heap, (key(dist[v], f), counter, w, v, f))
                counter += 1
    missing = [v for v in range(1, g.n + 1) if not done[v]]
    if missing:
        raise ValueError(f"vertices {missing[:5]} cannot be reached from the empty vertex; "
                         "every tensor needs a materialization edge")
    return parent


def mst(g: StorageGraph, scheme: str = "independent") -> StoragePlan:
    """Minimum storage: Prim's minimum spanning tree from the empty vertex."""
    return make_plan(g, _tree_search(g, lambda d, e: e.storage), scheme, "mst")


def spt(g: StorageGraph, scheme: str = "independent") -> StoragePlan:
    """Minimum recreation: Dijkstra's shortest-path tree on recreation cost."""
    return make_plan(g, _tree_search(g, lambda d, e: d + e.recreation), scheme, "spt")


def feasible(plan: StoragePlan, limits: Sequence[float]) -> bool:
    return all(c <= lim * (1 + _EPS) + _EPS for c, lim in zip(plan.group_cost, limits))


def group_alphas(g: StorageGraph, alpha: float, group_alpha: Optional[Sequence[float]]) -> tuple[float, ...]:
    """Per-snapshot alpha: ``group_alpha`` overrides ``alpha`` (e.g. 1.0 to keep a snapshot whole)."""
    alphas = tuple(float(a) for a in group_alpha) if group_alpha is not None else (alpha,) * len(g.groups)
    if len(alphas) != len(g.groups):
        raise ValueError(f"{len(alphas)} per-snapshot alphas for {len(g.groups)} snapshots; give one per snapshot")
    low = min(alphas + (alpha,))
    if low < 1:
        raise ValueError(f"alpha={low} is below 1, which no plan can meet; use alpha >= 1")
    return alphas


def limits_for(g: StorageGraph, alpha: float, scheme: str,
               group_alpha: Optional[Sequence[float]] = None) -> tuple[float, ...]:
    alphas = group_alphas(g, alpha, group_alpha)
    return tuple(a * c for a, c in zip(alphas, spt(g, scheme).group_cost))


class _Swaps:
    """A spanning tree under repair by swaps (hang vertex v below u by edge e), with every
    candidate swap as arrays, for PAS-MT and :func:`tighten`.

    A swap moves v's subtree, a range of the tree's preorder (:class:`_Preorder`, moved in
    place), by d = the change of v's path cost, and changes only the snapshots that subtree's
    vertices belong to: under the independent scheme each by d times how many of its vertices
    moved, read off prefix sums of snapshot membership along the preorder (parallel scheme: see
    :meth:`costs_after`), so every candidate swap is scored at once."""

    def __init__(self, g: StorageGraph, plan: StoragePlan, scheme: str, limits: Sequence[float]) -> None:
        import numpy as np   # here, not at the top: the catalog-only commands import this module
        self.np, self.g, self.scheme = np, g, scheme
        self.limits = list(limits)
        self.parent = list(plan.parent_edge)
        self.rc = list(plan.recreation)
        self.cost = list(group_costs(g, self.rc, scheme))
        self.member = np.zeros((g.n + 1, len(g.groups)), dtype=np.float64)   # vertex x snapshot: 0/1
        for gi, grp in enumerate(g.groups):
            self.member[list(set(grp)), gi] = 1.0
        self.tree = _Preorder([0] + [self.parent[v].other(v) for v in range(1, g.n + 1)])
        edge_id = {id(e): i for i, e in enumerate(g.edges)}
        self.parent_id = np.array([-1] + [edge_id[id(self.parent[v])] for v in range(1, g.n + 1)], dtype=np.int64)
        self.candidates = [(u, v, e) for e in g.edges for u, v in ((e.u, e.v), (e.v, e.u)) if v != 0]
        self.u = np.array([c[0] for c in self.candidates], dtype=np.int64)
        self.v = np.array([c[1] for c in self.candidates], dtype=np.int64)
        self.edge = np.array([edge_id[id(c[2])] for c in self.candidates], dtype=np.int64)
        self.recreation = np.array([c[2].recreation for c in self.candidates], dtype=np.float64)
        self.storage = np.array([c[2].storage for c in self.candidates], dtype=np.float64)
        self.edge_storage = np.array([e.storage for e in g.edges], dtype=np.float64)

    def feasible(self) -> bool:
        return all(c <= lim * (1 + _EPS) + _EPS for c, lim in zip(self.cost, self.limits))

    def swap_terms(self):
        """Per candidate: (d, extra stored bytes, vertices moved, whether it is open: not the
        vertex's current edge, and not hanging a subtree below itself)."""
        np, tree = self.np, self.tree
        rc = np.asarray(self.rc, dtype=np.float64)
        d = rc[self.u] + self.recreation - rc[self.v]
        tin_u, tin_v, tout_v = tree.tin[self.u], tree.tin[self.v], tree.tout()[self.v]
        ok = (self.parent_id[self.v] != self.edge) & ~((tin_v <= tin_u) & (tin_u < tout_v))
        extra = self.storage - self.edge_storage[self.parent_id[self.v]]
        return d, extra, tout_v - tin_v, ok

    def costs_after(self, idx, d):
        """(candidates ``idx`` x snapshots: each snapshot's cost after that swap, the moved
        vertices in each snapshot). Independent scheme: the cost plus d per moved vertex.
        Parallel (a snapshot costs its slowest vertex): the larger of the slowest vertex outside
        the moved subtree and the slowest inside it plus d, both read off the preorder (prefix
        and suffix maxima outside; one ``maximum.reduceat`` over the subtrees' ranges inside)."""
        np, tree = self.np, self.tree
        in_order = self.member[tree.order]
        prefix = np.vstack([np.zeros((1, in_order.shape[1])), np.cumsum(in_order, axis=0)])
        v = self.v[idx]
        tin, tout = tree.tin[v], tree.tout()[v]
        counts = prefix[tout] - prefix[tin]
        cost = np.asarray(self.cost, dtype=np.float64)
        if self.scheme == "independent":
            return cost + d[idx, None] * counts, counts
        rc = np.asarray(self.rc, dtype=np.float64)[tree.order]
        vals = np.vstack([np.where(in_order > 0, rc[:, None], -np.inf), np.full((1, in_order.shape[1]), -np.inf)])
        n = len(tree.order)
        before = np.vstack([np.full((1, vals.shape[1]), -np.inf), np.maximum.accumulate(vals[:n], axis=0)])
        after = np.maximum.accumulate(vals[::-1], axis=0)[::-1]            # after[i]: max of vals[i:]
        inside = np.maximum.reduceat(vals, np.ravel(np.column_stack([tin, tout])), axis=0)[::2]
        moved = np.maximum(np.maximum(before[tin], after[tout]), inside + d[idx, None])
        return np.where(counts > 0, np.maximum(moved, 0.0), cost), counts

    def apply(self, pick: int) -> None:
        u, v, e = self.candidates[pick]
        d = self.rc[u] + e.recreation - self.rc[v]
        block = self.tree.subtree(v)
        for x in block:
            self.rc[x] += d
        if self.scheme == "independent":
            for gi, k in enumerate(self.member[block].sum(axis=0)):
                if k:
                    self.cost[gi] += d * k
        else:
            self.cost = list(group_costs(self.g, self.rc, self.scheme))
        self.parent[v], self.parent_id[v] = e, self.edge[pick]
        self.tree.move(v, u)


def pas_mt(g: StorageGraph, alpha: float, scheme: str = "independent", max_swaps: int = 100_000,
           group_alpha: Optional[Sequence[float]] = None) -> Optional[StoragePlan]:
    """Start from the MST; while a snapshot is over its limit, re-parent the vertex whose
    swap buys the most violation reduction per extra stored byte. Each swap strictly
    lowers some path costs and raises none, so the loop ends (at worst in an SPT).

    Every candidate is scored at once (:class:`_Swaps`). On the EfficientNet-Lite0 fine-tune's
    graph (739 tensors, 7 snapshots, benchmarks/archive_context.py) the five plans of a default
    archive's alpha ladder took 4.2 s of CPU scored one candidate at a time, ~0.5 s now (parallel
    scheme: 8.9 -> 0.3 s), for the same plans; with measured sizes kept, planning had become most
    of what a re-archive costs.
    """
    import numpy as np
    state = _Swaps(g, mst(g, scheme), scheme, limits_for(g, alpha, scheme, group_alpha))
    limits = np.asarray(state.limits, dtype=np.float64)
    for _ in range(max_swaps):
        if state.feasible():
            return make_plan(g, state.parent, scheme, "pas-mt")
        d, extra, moved, ok = state.swap_terms()
        idx = np.flatnonzero(ok & (d < -_EPS))   # swaps that lower the moved vertex's path cost
        if not idx.size:
            return None
        after, counts = state.costs_after(idx, d)
        cost = np.asarray(state.cost, dtype=np.float64)
        gain = np.where(counts > 0, np.maximum(cost - limits, 0.0) - np.maximum(after - limits, 0.0),
                        0.0).sum(axis=1)
        extra = np.maximum(extra[idx], _EPS)
        helps = gain > _EPS
        # violation reduction per extra stored byte, free swaps first; where no swap reduces the
        # violation, any recreation reduction; the first of equal ranks, as a scan keeping the first best
        rank = np.where(helps, gain / extra, -np.inf) if helps.any() else -d[idx] * moved[idx] / extra
        state.apply(int(idx[int(np.argmax(rank))]))
    return None


def tighten(g: StorageGraph, plan: StoragePlan, alpha: float, scheme: str = "independent",
            group_alpha: Optional[Sequence[float]] = None, max_swaps: int = 100_000) -> StoragePlan:
    """Spend the slack a feasible plan leaves: while some swap stores fewer bytes and keeps
    every snapshot within its limit, make the one that saves the most.

    PAS-MT stops at the first feasible tree and PAS-PT grows one under per-vertex budgets,
    both short of their snapshot limits. On the trajectories of benchmarks/archive_context.py
    (seed 0), `dlv archive` at alpha 2 (the default) stores 5.0% (from-scratch CNN), 1.9%
    (EfficientNet-Lite0 fine-tune) and 8.2% (MiniLM bf16) less with :func:`best_plan`
    tightening every heuristic's plan; ~0.05 s each on their graphs.
    """
    import numpy as np
    state = _Swaps(g, plan, scheme, limits_for(g, alpha, scheme, group_alpha))
    limits = np.asarray(state.limits, dtype=np.float64) * (1 + _EPS) + _EPS
    swaps = 0
    while swaps < max_swaps:
        d, extra, _, ok = state.swap_terms()
        idx = np.flatnonzero(ok & (extra < -_EPS))   # swaps that store fewer bytes
        if not idx.size:
            break
        after, _ = state.costs_after(idx, d)
        fits = np.flatnonzero((after <= limits).all(axis=1))
        if not fits.size:
            break
        state.apply(int(idx[fits[int(np.argmin(extra[idx][fits]))]]))
        swaps += 1
    return plan if not swaps else make_plan(g, state.parent, scheme, f"{plan.algorithm}+tightened")


class _Preorder:
    """A tree's preorder, kept as a swap moves a subtree: ``order[tin[v]:tin[v] + size[v]]`` is
    v's subtree, and u lies in it iff ``tin[v] <= tin[u] < tin[v] + size[v]``. A move cuts that
    range out and puts it right after its new parent (a preorder of the new tree: siblings may
    come in any order), then fixes the sizes of both parents' ancestors."""

    def __init__(self, up: list[int]) -> None:
        import numpy as np
        self.np, self.up = np, up
        children: list[list[int]] = [[] for _ in up]
        for v in range(1, len(up)):
            children[up[v]].append(v)
        order, stack = [], [0]
        while stack:
            x = stack.pop()
            order.append(x)
            stack.extend(children[x])
        self.order = np.array(order, dtype=np.int64)
        self.tin = np.empty(len(up), dtype=np.int64)
        self.tin[self.order] = np.arange(len(up))
        self.size = np.ones(len(up), dtype=np.int64)
        for x in reversed(order[1:]):
            self.size[up[x]] += self.size[x]

    def tout(self):
        return self.tin + self.size

    def subtree(self, v: int) -> list[int]:
        a = int(self.tin[v])
        return self.order[a:a + int(self.size[v])].tolist()

    def move(self, v: int, u: int) -> None:
        np = self.np
        a, k = int(self.tin[v]), int(self.size[v])
        block = self.order[a:a + k]
        rest = np.concatenate([self.order[:a], self.order[a + k:]])
        at = int(self.tin[u]) - (k if self.tin[u] > a else 0) + 1
        self.order = np.concatenate([rest[:at], block, rest[at:]])
        self.tin[self.order] = np.arange(len(self.order))
        x = self.up[v]
        while True:   # the old parent's ancestors lose the subtree, the new parent's gain it
            self.size[x] -= k
            if x == 0:
                break
            x = self.up[x]
        x = u
        while True:
            self.size[x] += k
            if x == 0:
                break
            x = self.up[x]
        self.up[v] = u


def pas_pt(g: StorageGraph, alpha: float, scheme: str = "independent",
           group_alpha: Optional[Sequence[float]] = None) -> Optional[StoragePlan]:
    """Grow from the empty vertex, cheapest storage edge first, accepting an edge only if
    the new vertex's path cost stays within alpha times its shortest-path cost (with
    per-snapshot alphas: the smallest alpha of its snapshots and of those below it on
    shortest paths). Always
    feasible: a vertex's shortest-path predecessor p has rc(p) <= alpha*dist(p), so the
    edge p-v gives rc <= alpha*dist(p) + w <= alpha*dist(v); per-snapshot sums and maxima
    of per-vertex bounds then respect the snapshot limits."""
    alphas = group_alphas(g, alpha, group_alpha)
    # a vertex's budget factor: the tightest alpha of the snapshots holding it
    vertex_alpha = [alpha] * (g.n + 1)
    if group_alpha is not None:
        vertex_alpha = [float("inf")] * (g.n + 1)
        for a, grp in zip(alphas, g.groups):
            for v in grp:
                vertex_alpha[v] = min(vertex_alpha[v], a)
        vertex_alpha = [a if a != float("inf") else alpha for a in vertex_alpha]
    sp = spt(g, scheme)
    if group_alpha is not None:
        # Budgets must not grow towards the root along shortest paths, or a vertex's
        # shortest-path parent could use slack its child lacks: take the minimum
        # over each vertex's shortest-path subtree (children before parents).
        depth = [0] * (g.n + 1)
        for v in range(1, g.n + 1):
            x, d = v, 0
            while x > 0:
                x, d = sp.parent(x), d + 1
            depth[v] = d
        for v in sorted(range(1, g.n + 1), key=lambda x: -depth[x]):
            p = sp.parent(v)
            if p > 0:
                vertex_alpha[p] = min(vertex_alpha[p], vertex_alpha[v])
    adj = g.adjacency()
    parent: list[Optional[Edge]] = [None] * (g.n + 1)
    rc = [0.0] * (g.n + 1)
    done = [False] * (g.n + 1)
    done[0] = True
    heap = []
    counter = 0
    for f in adj[0]:
        heapq.heappush(heap, (f.storage, counter, 0, f))
        counter += 1
    while heap:
        _, _, u, e = heapq.heappop(heap)
        v = e.other(u)
        if done[v]:
            continue
        path = rc[u] + e.recreation
        if path > vertex_alpha[v] * sp.recreation[v] * (1 + _EPS) + _EPS:
            continue  # rc[u] is final, so this edge can never fit
        done[v] = True
        parent[v] = e
        rc[v] = path
        for f in adj[v]:
            if not done[f.other(v)]:
                heapq.heappush(heap, (f.storage, counter, v, f))
                counter += 1
    if not all(done):
        return None
    return make_plan(g, parent, scheme, "pas-pt")


def best_plan(g: StorageGraph, alpha: float, scheme: str = "independent",
              group_alpha: Optional[Sequence[float]] = None) -> StoragePlan:
    """Cheapest feasible plan among MST, PAS-MT, PAS-PT and SPT, each but the MST then
    :func:`tighten`-ed (a feasible MST has no slack worth spending: it stores least)."""
    check_graph(g)
    limits = limits_for(g, alpha, scheme, group_alpha)
    candidates: Iterable[Optional[StoragePlan]] = (mst(g, scheme), pas_mt(g, alpha, scheme, group_alpha=group_alpha),
                                            pas_pt(g, alpha, scheme, group_alpha), spt(g, scheme))
    ok = [p for p in candidates if p is not None and feasible(p, limits)]
    ok += [tighten(g, p, alpha, scheme, group_alpha) for p in ok if p.algorithm != "mst"]
    ok = [p for p in ok if feasible(p, limits)]
    return min(ok, key=lambda p: (p.storage, sum(p.group_cost)))
