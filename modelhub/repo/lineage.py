"""`dlv list`: models and how they descend from one another."""
from __future__ import annotations

from ..catalog import versions as catalog_versions
from .records import ModelSummary


def list_models(con) -> list[ModelSummary]:
    derived: dict[str, set[str]] = {}
    for link in catalog_versions.cross_model_parents(con):
        derived.setdefault(link.model, set()).add(f"{link.parent_model}@{link.parent_seq}")
    return [
        ModelSummary(
            name=m.name, n_versions=m.n_versions, latest_id=m.latest_id, latest_seq=m.latest_seq,
            created_at=m.created_at, updated_at=m.updated_at, derived_from=tuple(sorted(derived.get(m.name, ()))),
        )
        for m in catalog_versions.model_rows(con)
    ]
