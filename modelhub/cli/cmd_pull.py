"""`dlv pull REMOTE [REF | --all]`."""
from __future__ import annotations

from ..errors import InputError
from ..remote import open_remote, pull
from .common import repo_of
from .ui import human_bytes

HELP = "fetch a version (with its ancestors), or every version, from a remote, keeping ids and lineage"
DESCRIPTION = """Examples:
  dlv pull hub resnet@3
  dlv pull hub 3f2a9c0d1e
  dlv pull hub                    # every version of the remote (or: dlv pull hub --all)
REF is resolved on the remote (NAME, NAME@N, id prefix). The version keeps its id; its
local NAME@N is the remote's N when free here, else the model's next number."""


def configure(p) -> None:
    p.add_argument("remote", help="remote name (see `dlv remote list`), folder path or s3:// URL")
    p.add_argument("ref", nargs="?", help="version on the remote: id prefix, NAME or NAME@N (default: every version)")
    p.add_argument("--all", action="store_true", help="pull every version of the remote")


def run(args, ui) -> int:
    if args.all and args.ref:
        raise InputError("give a REF or --all, not both")
    repo = repo_of(args)
    report = pull(repo, open_remote(repo, args.remote), args.ref, progress=ui.progress())
    if ui.json_mode:
        ui.json(report.to_dict())
        return 0
    return print_pull(report, ui)


def print_pull(report, ui) -> int:
    what = f"{report.ref} ({report.id[:12]})" if report.id else f"every version of {report.remote}"
    if not report.pulled:
        ui.print(f"{what} is already here" if report.id else f"already up to date with {report.remote}")
        return 0
    ui.table(["id", "remote", "local"], [(p.id[:12], p.remote_ref, p.ref) for p in report.pulled])
    ui.print(f"pulled {what}: {report.blobs_fetched} blob(s), "
             f"{human_bytes(report.bytes_fetched)} fetched, {report.blobs_reused} reused")
    return 0
