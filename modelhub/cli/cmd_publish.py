"""`dlv publish REMOTE [REF...]`."""
from __future__ import annotations

from ..remote import open_remote, publish
from .common import repo_of
from .ui import human_bytes

HELP = "publish versions (and their ancestors) to a remote; only what it lacks is sent"
DESCRIPTION = """Examples:
  dlv publish hub                 # every version
  dlv publish hub resnet@3 lenet  # these versions and their ancestors
Re-run an interrupted publish: blobs already on the remote are skipped."""


def configure(p) -> None:
    p.add_argument("remote", help="remote name (see `dlv remote list`), folder path or s3:// URL")
    p.add_argument("refs", nargs="*", metavar="REF", help="versions to publish (default: every version)")
    p.add_argument("--repair", action="store_true",
                   help="re-send every blob of these versions (fixes missing or corrupted objects on the remote)")


def run(args, ui) -> int:
    repo = repo_of(args)
    report = publish(repo, open_remote(repo, args.remote), args.refs, repair=args.repair, progress=ui.progress())
    if ui.json_mode:
        ui.json(report.to_dict() | {"total_bytes": report.total_bytes})
        return 0
    if report.segment is None:
        repaired = f"; re-sent {report.blobs_sent} missing blob(s)" if report.blobs_sent else ""
        ui.print(f"remote {report.remote} is up to date ({report.already_there} version(s) already there){repaired}")
        return 0
    ui.print(f"published {len(report.versions)} version(s) to {report.remote}: {', '.join(report.versions)}")
    ui.kv([
        ("blobs sent", f"{report.blobs_sent} ({human_bytes(report.bytes_sent)})"),
        ("blobs already there", f"{report.blobs_skipped} ({human_bytes(report.bytes_skipped)})"),
        ("catalog segment", f"{report.segment} ({human_bytes(report.segment_bytes)})"),
    ])
    return 0
