"""`dlv fsck --restore-catalog`: replace a damaged or missing catalog (catalog/maintenance.py).

Its rows are salvaged into a freshly built catalog when they all read back,
else the newest backup that verifies is restored; the damaged file is kept
under ``.dlv/backups``. Runs under the exclusive repository lock.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..catalog import Catalog
from ..catalog import versions as catalog_versions
from ..catalog.lock import repo_lock
from ..catalog.maintenance import restore_catalog
from ..errors import RepoError
from .paths import DLV_DIR, RepoPaths, find_repo_root, is_repo_dir
from .records import Record


@dataclass(frozen=True)
class CatalogRestore(Record):
    source: str              # "salvaged": every row of the damaged catalog kept; "backup": the newest verified backup
    backup: str | None       # the backup restored from
    damaged_copy: str | None  # where the damaged catalog was moved
    versions: int            # model versions in the restored catalog


def restore_repo_catalog(path: Path | str | None = None) -> CatalogRestore:
    root = Path(path).resolve() if path is not None and is_repo_dir(Path(path) / DLV_DIR) else find_repo_root(path)
    paths = RepoPaths(root)
    if not is_repo_dir(paths.dlv):
        raise RepoError(f"{root} is not a dlv repository; pass --repo PATH")
    with repo_lock(paths.lock, exclusive=True):
        report = restore_catalog(paths.catalog)
    catalog = Catalog(paths.catalog, paths.lock)
    catalog.ensure_schema()  # a backup may predate a migration (as opening a Repo would)
    with catalog.read() as con:
        versions = catalog_versions.count_versions(con)
    return CatalogRestore(report.source, report.backup, report.damaged_copy, versions)
