"""`dlv pull REMOTE REF`."""
from __future__ import annotations

from ..remote import open_remote, pull
from .common import repo_of
from .ui import human_bytes

HELP = "fetch a version (with its ancestors) from a remote, keeping ids and lineage"
DESCRIPTION = """Examples:
  dlv pull hub resnet@3
  dlv pull hub 3f2a9c0d1e
REF is resolved on the remote (NAME, NAME@N, id prefix). The version keeps its id; its
local NAME@N is the remote's N when free here, else the model's next number."""


def configure(p) -> None:
    p.add_argument("remote", help="remote name (see `dlv remote list`), folder path or s3:// URL")
    p.add_argument("ref", help="version on the remote: id prefix, NAME or NAME@N")


def run(args, ui) -> int:
    repo = repo_of(args)
    report = pull(repo, open_remote(repo, args.remote), args.ref, progress=ui.progress())
    if ui.json_mode:
        ui.json(report.to_dict())
        return 0
    if not report.pulled:
        ui.print(f"{report.ref} ({report.id[:12]}) is already here")
        return 0
    ui.table(["id", "remote", "local"], [(p.id[:12], p.remote_ref, p.ref) for p in report.pulled])
    ui.print(f"pulled {report.ref} ({report.id[:12]}): {report.blobs_fetched} blob(s), "
             f"{human_bytes(report.bytes_fetched)} fetched, {report.blobs_reused} reused")
    return 0
