"""The storage plans `dlv archive` chose and each snapshot's recreation cost under them
(tables archive_plans, archive_costs). The plan itself lives in the tensors'
manifests (:mod:`.tensors`); these rows record what was chosen and why."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb


@dataclass(frozen=True)
class PlanRow:
    created_at: datetime
    alpha: float
    scheme: str
    algorithm: str
    stored_bytes: int
    mst_bytes: int
    spt_bytes: int


@dataclass(frozen=True)
class CostRow:
    version_id: str
    snap: int
    recreation_cost: float
    spt_cost: float


def record_plan(con: duckdb.DuckDBPyConnection, plan: PlanRow, costs: list[CostRow]) -> int:
    """Store a plan and its per-snapshot costs; returns the new plan's id."""
    plan_id = int(con.execute("SELECT coalesce(max(plan_id), 0) + 1 FROM archive_plans").fetchone()[0])
    con.execute("INSERT INTO archive_plans VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [plan_id, plan.created_at, plan.alpha, plan.scheme, plan.algorithm, plan.stored_bytes,
                 plan.mst_bytes, plan.spt_bytes])
    if costs:
        con.executemany("INSERT INTO archive_costs VALUES (?, ?, ?, ?, ?)",
                        [[plan_id, c.version_id, c.snap, c.recreation_cost, c.spt_cost] for c in costs])
    return plan_id
