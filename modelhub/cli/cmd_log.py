from __future__ import annotations

from .common import repo_of

HELP = "list versions, newest first (of one model, or all)"


def configure(p) -> None:
    p.add_argument("name", nargs="?", help="model name (default: every model)")
    p.add_argument("-n", "--limit", type=int, default=None, help="show at most N versions")


def first_line(message: str, width: int) -> str:
    """The message's first line (as `git log --oneline`), at most ``width`` characters; a cut one ends in '…'."""
    line = (message.splitlines() or [""])[0]
    return line[: width - 1].rstrip() + "…" if len(line) > width else line


def run(args, ui) -> int:
    versions = repo_of(args).log(args.name)
    if args.limit is not None:
        versions = versions[: max(args.limit, 0)]
    if ui.json_mode:
        ui.json([v.to_dict() for v in versions])
        return 0
    # The run column appears once some version came from a run (repo.run, the Lightning or
    # Hugging Face callbacks); a repository without runs keeps git's plain log.
    with_runs = any(v.run_status for v in versions)
    ui.table(
        ["ref", "id", "created", "author", "parents"] + (["run"] if with_runs else []) + ["message"],
        [
            (v.ref, v.short_id, v.created_at, v.author, ",".join(p[:12] for p in v.parents) or "-")
            + ((v.run_status or "-",) if with_runs else ()) + (first_line(v.message, 60),)
            for v in versions
        ],
    )
    return 0
