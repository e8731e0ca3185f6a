from __future__ import annotations

from ..errors import RepoExistsError
from ..repo import init_repo, open_repo

HELP = "create a repository (.dlv/) in PATH (default: the current folder)"


def configure(p) -> None:
    p.add_argument("path", nargs="?", default=".", help="folder to hold the repository")


def run(args, ui) -> int:
    target = args.path if args.repo is None else args.repo
    try:
        repo, created = init_repo(target), True
    except RepoExistsError:
        # As `git init` in a repository: nothing to do is not a failure; the repository is left as it was.
        repo, created = open_repo(target), False
    if ui.json_mode:
        ui.json({"root": str(repo.root), "catalog": str(repo.paths.catalog), "created": created})
    elif created:
        ui.print(f"Initialized empty dlv repository in {repo.paths.dlv}")
    else:
        ui.print(f"{repo.root} is already a dlv repository; nothing changed")
    return 0
