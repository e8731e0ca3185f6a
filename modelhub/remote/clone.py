"""`dlv clone REMOTE [DIR]`: a new repository holding every version of a remote, which it names `origin`."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..catalog.tensor_ids import follow_pulled_ids
from ..errors import InputError
from ..repo import Repo, init_repo
from .config import add_remote
from .progress import NULL_PROGRESS, Progress
from .pull import PullReport, pull
from .transport import canonical_url, open_store, parse_url

ORIGIN = "origin"


@dataclass(frozen=True)
class CloneResult:
    repo: Repo
    report: PullReport


def default_folder(url: str) -> Path:
    """As git: the last part of the remote's path ('s3://bucket/models' -> 'models')."""
    name = canonical_url(url).rstrip("/").rsplit("/", 1)[-1]
    return Path(name or "hub")


def clone(url: str, folder: str | Path | None = None, *, options=None,
          progress: Progress = NULL_PROGRESS) -> CloneResult:
    """Create a repository in ``folder`` (default: named after the remote), add ``url`` as remote
    ``origin`` and pull every version. A folder that exists must be empty; on failure a folder this
    call created is removed again (nothing half-cloned stays behind)."""
    parse_url(canonical_url(url))  # a malformed URL is refused before anything is created
    target = Path(folder) if folder is not None else default_folder(url)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputError(f"{target} already exists and is not an empty folder; clone into a new or empty folder")
    created = not target.exists()
    try:
        repo = init_repo(target)
        cfg = add_remote(repo, ORIGIN, url, options)
        report = pull(repo, open_store(cfg.name, cfg.url, cfg.options), None, progress=progress)
        with repo.catalog.write() as con:
            follow_pulled_ids(con)
    except BaseException:
        if created:
            shutil.rmtree(target, ignore_errors=True)
        else:
            shutil.rmtree(target / ".dlv", ignore_errors=True)
        raise
    return CloneResult(repo, report)
