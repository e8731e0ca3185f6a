from __future__ import annotations

from .common import repo_of

HELP = "list models with their version counts and lineage"


def configure(p) -> None:
    pass


def run(args, ui) -> int:
    models = repo_of(args).models()
    if ui.json_mode:
        ui.json([m.to_dict() for m in models])
        return 0
    ui.table(
        ["model", "versions", "latest", "updated", "derived from"],
        [(m.name, m.n_versions, f"@{m.latest_seq} {m.latest_id[:12]}", m.updated_at, ", ".join(m.derived_from) or "-")
         for m in models],
        align_right=(1,),
    )
    return 0
