from __future__ import annotations

from .common import repo_of
from .ui import human_bytes

HELP = "stage files to attach to the next commit (--undo: unstage them)"


def configure(p) -> None:
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--undo", action="store_true", help="unstage these files instead (as `dlv reset FILE`)")


def run(args, ui) -> int:
    if args.undo:
        from .cmd_reset import print_unstaged
        return print_unstaged(repo_of(args).unstage(args.files), ui)
    staged = repo_of(args).add(args.files)
    if ui.json_mode:
        ui.json([{"path": p, "size": s} for p, s in staged])
    else:
        for p, s in staged:
            ui.print(f"staged {p} ({human_bytes(s)})")
    return 0
