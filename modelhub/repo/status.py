"""`dlv status`: what the next commit would take, and the state of the repository, from cheap reads only."""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from ..catalog import files as catalog_files
from ..catalog import tags as catalog_tags
from .lineage import list_models
from .records import ModelSummary, Record


@dataclass(frozen=True)
class StagedStatus(Record):
    path: str
    size: int
    staged_at: datetime
    state: str              # 'staged' | 'modified' (changed in the folder since `dlv add`) | 'deleted'


@dataclass(frozen=True)
class RepoStatus(Record):
    root: str
    staged: tuple[StagedStatus, ...]
    models: tuple[ModelSummary, ...]
    n_tags: int
    warnings: tuple[str, ...]   # what cheap checks noticed (not a substitute for `dlv fsck`)


def _state(root: Path, f: catalog_files.StagedFile) -> str:
    try:
        st = os.stat(root / f.path)
    except FileNotFoundError:
        return "deleted"
    changed_at = datetime.fromtimestamp(st.st_mtime, timezone.utc).replace(tzinfo=None)
    return "modified" if st.st_size != f.size or changed_at > f.staged_at else "staged"


def repo_status(con: duckdb.DuckDBPyConnection, root: Path, *, catalog_path: Path) -> RepoStatus:
    staged = tuple(StagedStatus(f.path, f.size, f.staged_at, _state(root, f))
                   for f in catalog_files.staged_files(con))
    warnings = []
    for s in staged:
        if s.state == "modified":
            warnings.append(f"{s.path} changed since `dlv add`; the next commit takes the staged copy "
                            f"(run `dlv add {s.path}` again to take the new one)")
        elif s.state == "deleted":
            warnings.append(f"{s.path} was deleted from the folder; the next commit still attaches the staged copy "
                            f"(`dlv reset {s.path}` unstages it)")
    wal = catalog_path.with_name(catalog_path.name + ".wal")
    if wal.exists() and wal.stat().st_size > 0:
        warnings.append("the catalog has a pending write-ahead log (another process is writing, or one was "
                        "interrupted; the next write replays it)")
    return RepoStatus(str(root), staged, tuple(list_models(con)), len(catalog_tags.tags(con)), tuple(warnings))
