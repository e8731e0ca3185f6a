from __future__ import annotations

from .common import repo_of
from .ui import human_bytes

HELP = "stage files to attach to the next commit"


def configure(p) -> None:
    p.add_argument("files", nargs="+", metavar="FILE")


def run(args, ui) -> int:
    staged = repo_of(args).add(args.files)
    if ui.json_mode:
        ui.json([{"path": p, "size": s} for p, s in staged])
    else:
        for p, s in staged:
            ui.print(f"staged {p} ({human_bytes(s)})")
    return 0
