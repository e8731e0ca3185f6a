"""Repository operations, one module each; :class:`Repo` is their facade."""

__all__ = [
    "Repo", "init_repo", "open_repo", "Checkout", "ModelSummary", "RepoStats",
    "VersionDescription", "VersionDiff", "VersionInfo", "load_metrics_file",
]

_FROM = {"Repo": "repository", "init_repo": "repository", "open_repo": "repository",
         "load_metrics_file": "metrics_file"}


def __getattr__(name: str):
    # Imported on first use: the facade and the records import torch, while some modules
    # of this package (paths, refs, the run records the web UI reads) do not need it.
    if name in __all__:
        import importlib
        module = importlib.import_module(f".{_FROM.get(name, 'records')}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'modelhub.repo' has no attribute {name!r}")
