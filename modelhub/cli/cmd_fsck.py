from __future__ import annotations

from ..errors import IntegrityError
from ..repo import Repo
from .common import repo_of

HELP = "verify the catalog against the object store and every blob checksum"


def configure(p) -> None:
    p.add_argument("--repair", action="store_true", help="remove harmless leftovers (orphan blobs, temp files, stale rows)")
    p.add_argument("--deep", action="store_true", help="also decode every tensor and compare it with its hash")
    p.add_argument("--restore-catalog", action="store_true",
                   help="replace a damaged or missing catalog: salvage its readable rows, else restore the newest "
                        "verified backup in .dlv/backups (then check the repository)")


def run(args, ui) -> int:
    if args.restore_catalog:
        restored = Repo.restore_catalog(args.repo)
        how = ("rebuilt from its own readable rows (nothing lost)" if restored.source == "salvaged"
               else f"restored from the backup {restored.backup} (versions committed after it are lost; "
                    "their blobs are orphans now)")
        ui.warn(f"catalog {how}; {restored.versions} versions"
                + (f"; the damaged file is kept as {restored.damaged_copy}" if restored.damaged_copy else ""))
    report = repo_of(args).fsck(repair=args.repair, deep=args.deep)
    if ui.json_mode:
        ui.json(report.to_dict() | {"ok": report.ok})
    else:
        ui.print(f"checked {report.versions_checked} versions, {report.blobs_checked} blobs"
                 + (f", decoded {report.tensors_checked} tensors" if args.deep else ""))
        if report.problems:
            # Errors one per row (each names what it damages); harmless leftovers
            # are counted per kind, or hundreds of orphan rows would bury them.
            rows = [(p.severity, p.kind + (" (repaired)" if p.repaired else ""), p.subject[:16], p.detail,
                     ", ".join(p.versions[:5]) + (" ..." if len(p.versions) > 5 else "")) for p in report.errors]
            warnings: dict[tuple[str, bool], list] = {}
            for p in report.problems:
                if p.severity != "error":
                    warnings.setdefault((p.kind, p.repaired), []).append(p)
            for (kind, repaired), items in warnings.items():
                subject = items[0].subject[:16] if len(items) == 1 else f"{len(items)} items"
                rows.append(("warning", kind + (" (repaired)" if repaired else ""), subject, items[0].detail, ""))
            ui.table(["severity", "problem", "subject", "detail", "versions affected"], rows)
        else:
            ui.print("no problems found")
    if not report.ok:
        raise IntegrityError(
            f"{len(report.errors)} error(s) found; restore the affected versions from a remote (`dlv pull`) or a backup"
        )
    return 0
