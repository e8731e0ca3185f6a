"""`dlv runs`: training runs (docs/RUNS.md), and committing one whose process died."""
from __future__ import annotations

from .common import repo_of

HELP = "list training runs and their state; commit an unfinished one (--commit RUN)"
DESCRIPTION = """List the runs tracked with repo.run() or a training callback (newest first), or commit an
unfinished run (its process died) as a version.

examples:
  dlv runs                          every run
  dlv runs digits-cnn               runs of one model
  dlv runs --commit 3f2a1b9c        commit what the run logged, status finished
  dlv runs --commit 3f2a1b9c --failed "preempted"
"""


def configure(p) -> None:
    p.add_argument("name", nargs="?", help="model name (default: every model)")
    p.add_argument("--commit", metavar="RUN", help="commit this unfinished run (id or unique prefix)")
    p.add_argument("--failed", metavar="REASON", help="with --commit: record the run as failed, for this reason")
    p.add_argument("-m", "--message", help="with --commit: the version's message")


def run(args, ui) -> int:
    repo = repo_of(args)
    if args.commit:
        status = "failed" if args.failed is not None else "finished"
        version = repo.commit_run(args.commit, status=status, status_message=args.failed, message=args.message)
        info = repo.run_info(args.commit)
        if ui.json_mode:
            ui.json({"run": info.to_dict(), "version": version.to_dict() if version else None})
        elif version is None:
            ui.print(f"run {info.short_id} ended as {status}; it took no snapshot, so no version was committed")
        else:
            ui.print(f"committed {version.ref} ({version.short_id}) from run {info.short_id}, {status}")
        return 0
    runs = repo.runs(args.name)
    if ui.json_mode:
        ui.json([r.to_dict() for r in runs])
        return 0
    ui.table(
        ["run", "model", "state", "started", "last step", "snapshots", "version", "note"],
        [(r.short_id, r.model, r.state, r.started_at, "-" if r.last_step is None else r.last_step, r.n_snapshots,
          r.version_ref or "-", r.status_message or "")
         for r in runs],
        align_right=(4, 5),
    )
    return 0
