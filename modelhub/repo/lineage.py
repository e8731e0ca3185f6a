"""`dlv list`: models and how they descend from one another."""
from __future__ import annotations

from .records import ModelSummary


def list_models(con) -> list[ModelSummary]:
    rows = con.execute(
        "SELECT model, count(*), arg_max(id, seq), max(seq), min(created_at), max(created_at) "
        "FROM versions GROUP BY model ORDER BY model"
    ).fetchall()
    derived: dict[str, set[str]] = {}
    for model, parent_model, pid, pseq in con.execute(
        "SELECT v.model, p.model, p.id, p.seq FROM version_parents vp "
        "JOIN versions v ON v.id = vp.version_id JOIN versions p ON p.id = vp.parent_id "
        "WHERE p.model <> v.model"
    ).fetchall():
        derived.setdefault(model, set()).add(f"{parent_model}@{pseq}")
    return [
        ModelSummary(
            name=r[0], n_versions=int(r[1]), latest_id=r[2], latest_seq=int(r[3]), created_at=r[4],
            updated_at=r[5], derived_from=tuple(sorted(derived.get(r[0], ()))),
        )
        for r in rows
    ]
