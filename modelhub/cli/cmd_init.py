from __future__ import annotations

from ..repo import init_repo

HELP = "create a repository (.dlv/) in PATH (default: the current folder)"


def configure(p) -> None:
    p.add_argument("path", nargs="?", default=".", help="folder to hold the repository")


def run(args, ui) -> int:
    repo = init_repo(args.path if args.repo is None else args.repo)
    if ui.json_mode:
        ui.json({"root": str(repo.root), "catalog": str(repo.paths.catalog)})
    else:
        ui.print(f"Initialized empty dlv repository in {repo.paths.dlv}")
    return 0
