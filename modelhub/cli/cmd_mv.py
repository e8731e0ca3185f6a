"""`dlv mv OLD NEW`: rename a model."""
from __future__ import annotations

from .common import repo_of

HELP = "rename a model (versions keep their ids and numbers; tags move along)"


def configure(p) -> None:
    p.add_argument("old", help="the model's current name")
    p.add_argument("new", help="its new name")


def run(args, ui) -> int:
    repo_of(args).rename_model(args.old, args.new)
    if ui.json_mode:
        ui.json({"old": args.old, "new": args.new})
    else:
        ui.print(f"renamed model {args.old} to {args.new}")
    return 0
