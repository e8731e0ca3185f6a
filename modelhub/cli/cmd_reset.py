"""`dlv reset PATH...`: unstage, as `git reset PATH`."""
from __future__ import annotations

from .common import repo_of

HELP = "unstage files staged by `dlv add` (the files in the folder are not touched)"


def configure(p) -> None:
    p.add_argument("files", nargs="+", metavar="FILE")


def run(args, ui) -> int:
    return print_unstaged(repo_of(args).unstage(args.files), ui)


def print_unstaged(paths: list[str], ui) -> int:
    if ui.json_mode:
        ui.json([{"path": p} for p in paths])
    else:
        for p in paths:
            ui.print(f"unstaged {p}")
    return 0
