"""Where a repository's parts live on disk."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import RepoError

DLV_DIR = ".dlv"


@dataclass(frozen=True)
class RepoPaths:
    root: Path  # the user's working folder (parent of .dlv)

    @property
    def dlv(self) -> Path:
        return self.root / DLV_DIR

    @property
    def catalog(self) -> Path:
        return self.dlv / "catalog.duckdb"

    @property
    def objects(self) -> Path:
        return self.dlv / "objects"

    @property
    def features(self) -> Path:
        return self.dlv / "features"

    @property
    def hot(self) -> Path:
        return self.dlv / "hot"

    @property
    def lock(self) -> Path:
        return self.dlv / "lock"

    @property
    def history(self) -> Path:
        return self.dlv / "repl_history"


def find_repo_root(start: Path | str | None = None) -> Path:
    """The nearest folder at or above ``start`` holding a ``.dlv`` repository."""
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if is_repo_dir(candidate / DLV_DIR):
            return candidate
    raise RepoError(
        f"{here} is not inside a dlv repository (no .dlv folder found here or above); "
        "run `dlv init` to create one, or pass --repo PATH"
    )


def is_repo_dir(dlv: Path) -> bool:
    """A ``.dlv`` folder: its catalog, or (the catalog lost) blobs or catalog backups to restore from.

    A ``.dlv`` left by an interrupted ``dlv init`` (empty folders) is not one.
    """
    if (dlv / "catalog.duckdb").is_file():
        return True
    return any(_entries(dlv / "objects")) or any(p.name.startswith("catalog-") for p in _entries(dlv / "backups"))


def _entries(folder: Path):
    try:
        return list(folder.iterdir())
    except OSError:
        return []
