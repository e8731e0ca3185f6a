"""`dlv clone REMOTE [DIR]`."""
from __future__ import annotations

from ..remote import clone
from ..remote.progress import terminal_progress
from .cmd_pull import print_pull

HELP = "create a repository from a remote: every version, and the remote as `origin`"
DESCRIPTION = """Examples:
  dlv clone /mnt/shared/hub               # into ./hub
  dlv clone s3://bucket/models work       # into ./work (S3 settings from the AWS_* variables)
Afterwards `dlv pull origin` fetches what was published since."""


def configure(p) -> None:
    p.add_argument("remote", help="the remote's folder path or s3:// URL")
    p.add_argument("dir", nargs="?", help="folder to create (default: the remote's last path part)")
    p.add_argument("--endpoint-url", help="S3 endpoint (stored with the remote, as `dlv remote add`)")


def run(args, ui) -> int:
    options = {"endpoint_url": args.endpoint_url} if args.endpoint_url else None
    result = clone(args.remote, args.dir, options=options, progress=terminal_progress(ui))
    if ui.json_mode:
        ui.json({"root": str(result.repo.root), "remote": "origin"} | result.report.to_dict())
        return 0
    ui.print(f"cloned {args.remote} into {result.repo.root}")
    return print_pull(result.report, ui)
