"""Repository operations, one module each; :class:`Repo` is their facade."""
from .metrics_file import load_metrics_file, with_final_values
from .records import Checkout, ModelSummary, RepoStats, VersionDescription, VersionDiff, VersionInfo
from .repository import Repo, init_repo, open_repo

__all__ = [
    "Repo", "init_repo", "open_repo", "Checkout", "ModelSummary", "RepoStats",
    "VersionDescription", "VersionDiff", "VersionInfo", "load_metrics_file", "with_final_values",
]
