from __future__ import annotations

from .common import repo_of

HELP = "start a new model NEWNAME from an existing version (lineage kept)"


def configure(p) -> None:
    p.add_argument("ref", metavar="REF")
    p.add_argument("new_name", metavar="NEWNAME")
    p.add_argument("-m", "--message", help="message of the new model's first version")


def run(args, ui) -> int:
    info = repo_of(args).copy(args.ref, args.new_name, message=args.message)
    if ui.json_mode:
        ui.json(info.to_dict())
    else:
        ui.print(f"[{info.ref} {info.short_id}] {info.message}")
    return 0
