"""`dlv rm REF...` / `dlv rm --model NAME...`."""
from __future__ import annotations

from .common import repo_of

HELP = "remove versions (or whole models with --model); `dlv gc` then reclaims their space"
DESCRIPTION = """Examples:
  dlv rm resnet@3                 # refused when other versions descend from it
  dlv rm -r resnet@3              # it and every version descending from it
  dlv rm --model resnet           # every version of the model
  dlv gc                          # reclaim the space
Removal is one transaction: an interruption leaves everything or nothing removed."""


def configure(p) -> None:
    p.add_argument("refs", nargs="+", metavar="REF", help="versions (NAME@N, NAME:TAG, id); model names with --model")
    p.add_argument("--model", action="store_true", help="remove every version of the named models")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="also remove the versions that descend from them (otherwise those make it fail)")


def run(args, ui) -> int:
    removed = repo_of(args).remove(args.refs, model=args.model, recursive=args.recursive)
    if ui.json_mode:
        ui.json(removed.to_dict())
        return 0
    for ref, vid in zip(removed.versions, removed.ids):
        ui.print(f"removed {ref} ({vid[:12]})")
    for tag in removed.tags:
        ui.print(f"deleted tag {tag}")
    ui.print("run `dlv gc` to reclaim the space")
    return 0
