from __future__ import annotations

from ..repo import Repo
from .common import repo_of
from .ui import human_bytes

HELP = "delete blobs and tensors that no version references"


def configure(p) -> None:
    p.add_argument("--dry-run", action="store_true", help="report what would be removed, remove nothing")
    p.add_argument("--grace", type=float, default=Repo.DEFAULT_GC_GRACE_S, metavar="SECONDS",
                   help=f"keep unreferenced blobs younger than this (default {Repo.DEFAULT_GC_GRACE_S:.0f}s: "
                        "protects writes in flight)")
    p.add_argument("--now", action="store_true", help="no grace period (only when no other dlv process is running)")
    p.add_argument("--features", action="store_true",
                   help="also drop every materialized frozen-layer feature (recomputed by the next evaluate)")


def run(args, ui) -> int:
    report = repo_of(args).gc(grace_s=0.0 if args.now else args.grace, dry_run=args.dry_run, features=args.features)
    if ui.json_mode:
        ui.json(report.to_dict())
        return 0
    verb = "would remove" if report.dry_run else "removed"
    ui.print(f"{verb} {report.removed_blobs} blobs ({human_bytes(report.removed_bytes)}), "
             f"{report.removed_tensor_rows} tensor rows, {report.removed_temp_files} temp files")
    if report.removed_feature_files:
        ui.print(f"{verb} {report.removed_feature_files} feature files ({human_bytes(report.removed_feature_bytes)})")
    if report.removed_hot_files:
        ui.print(f"{verb} {report.removed_hot_files} stale hot copies ({human_bytes(report.removed_hot_bytes)})")
    if report.kept_young_blobs:
        ui.print(f"kept {report.kept_young_blobs} unreferenced blobs younger than the grace period (use --now to remove them)")
    return 0
