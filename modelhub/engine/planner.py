"""Choose which prefix outputs to materialize: an exact DP over the prefix tree.

Cost model (seconds, from measured throughput):
  * a node on disk costs its extraction once for the records not stored yet
    (compute from its nearest materialized ancestor, plus the write) and a read
    per epoch of the heads that train on it (one read in total when it fits the
    in-memory cache);
  * a node that heads need but that is not materialized is recomputed every
    epoch from its nearest materialized ancestor (the input at the root).
The storage budget bounds the bytes of all materialized nodes. ``solve`` is a
tree knapsack: f(v, a, b) = least cost of v's subtree when a is v's nearest
materialized ancestor and b budget units are left; it is exact up to the
rounding of sizes up to budget units (never over budget).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class PlanNode:
    key: str
    parent: str | None                # None: an input root (always available, costs nothing)
    compute_s: float                  # seconds per record to compute from the parent
    bytes_per_record: int
    demand_epochs: int                # epochs of the heads that read this node (0: none)
    stored_records: int = 0           # records already materialized (earlier runs)


@dataclass(frozen=True)
class PlanCosts:
    read_bytes_per_s: float
    write_bytes_per_s: float
    n_records: int
    storage_budget: int | None        # bytes; None = unlimited
    memory_cache: int = 1 << 30       # materialized features up to this size are read once per run


@dataclass(frozen=True)
class ExtractionPlan:
    materialize: frozenset[str]
    estimated_s: float
    recompute_s: float                # estimate when nothing is materialized (for reporting)
    storage_bytes: int
    decisions: tuple[tuple[str, str], ...] = field(default=())   # (key, "store" | "recompute" | "pass")


def solve(nodes: list[PlanNode], costs: PlanCosts, units: int = 128) -> ExtractionPlan:
    by_key = {n.key: n for n in nodes}
    children: dict[str, list[str]] = {n.key: [] for n in nodes}
    for n in nodes:
        if n.parent is not None:
            children[n.parent].append(n.key)
    roots = [n.key for n in nodes if n.parent is None]
    N = costs.n_records

    def size(k: str) -> int:
        return N * by_key[k].bytes_per_record

    total = sum(size(n.key) for n in nodes if n.parent is not None)
    budget = total if costs.storage_budget is None else min(costs.storage_budget, total)
    if total == 0 or budget >= total:
        unit, U = 1.0, 0        # everything fits: no knapsack dimension needed
    else:
        unit, U = max(budget, 1) / units, units
    size_units = {k: (0 if U == 0 else math.ceil(size(k) / unit)) for k in by_key}
    if U and budget <= 0:
        size_units = {k: U + 1 for k in by_key}

    @lru_cache(maxsize=None)
    def path_s(anc: str, v: str) -> float:
        s, k = 0.0, v
        while k != anc:
            s += by_key[k].compute_s
            k = by_key[k].parent  # type: ignore[assignment]
        return s

    def read_s(k: str) -> float:
        return 0.0 if by_key[k].parent is None else by_key[k].bytes_per_record / costs.read_bytes_per_s

    def own_cost(v: str, anc: str, store: bool) -> float:
        n = by_key[v]
        if store:
            new = max(0, N - n.stored_records)
            extract = new * (path_s(anc, v) + n.bytes_per_record / costs.write_bytes_per_s)
            reads = 0 if n.demand_epochs == 0 else (1 if size(v) <= costs.memory_cache else n.demand_epochs)
            return extract + reads * N * read_s(v)
        return n.demand_epochs * N * (read_s(anc) + path_s(anc, v))

    Table = tuple[np.ndarray, list[frozenset[str]]]

    def combine(a: Table, b: Table) -> Table:
        ca, sa = a
        cb, sb = b
        cost = np.empty(U + 1)
        sets: list[frozenset[str]] = []
        for budget_left in range(U + 1):
            vals = ca[:budget_left + 1] + cb[budget_left::-1]
            i = int(np.argmin(vals))
            cost[budget_left] = vals[i]
            sets.append(sa[i] | sb[budget_left - i])
        return cost, sets

    def zero() -> Table:
        return np.zeros(U + 1), [frozenset()] * (U + 1)

    @lru_cache(maxsize=None)
    def f(v: str, anc: str) -> Table:
        # option 1: v not materialized, children keep ancestor anc
        kids = zero()
        for c in children[v]:
            kids = combine(kids, f(c, anc))
        best_cost = kids[0] + own_cost(v, anc, False)
        best_sets = list(kids[1])
        # option 2: v materialized
        s = size_units[v]
        if s <= U:
            kids1 = zero()
            for c in children[v]:
                kids1 = combine(kids1, f(c, v))
            own = own_cost(v, anc, True)
            for b in range(s, U + 1):
                c1 = kids1[0][b - s] + own
                if c1 < best_cost[b]:
                    best_cost[b] = c1
                    best_sets[b] = kids1[1][b - s] | {v}
        return best_cost, best_sets

    table = zero()
    for r in roots:
        kids = zero()
        for c in children[r]:
            kids = combine(kids, f(c, r))
        table = combine(table, kids)
    chosen = table[1][U]
    estimated = float(table[0][U])

    recompute = 0.0
    for n in nodes:
        if n.parent is not None and n.demand_epochs:
            recompute += own_cost(n.key, by_key[_root_of(n.key, by_key)].key, False)
    decisions = tuple(
        (n.key, "store" if n.key in chosen else ("recompute" if n.demand_epochs else "pass"))
        for n in nodes if n.parent is not None
    )
    return ExtractionPlan(frozenset(chosen), estimated, recompute, sum(size(k) for k in chosen), decisions)


def _root_of(key: str, by_key: dict[str, PlanNode]) -> str:
    while by_key[key].parent is not None:
        key = by_key[key].parent  # type: ignore[assignment]
    return key
