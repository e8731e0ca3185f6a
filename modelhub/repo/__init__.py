"""Repository operations, one module each; :class:`Repo` is their facade.

Names are exported lazily (PEP 562) so that importing the facade does not
import what only some operations need.
"""
import importlib

_EXPORTS = {
    "Repo": ".repository", "init_repo": ".repository", "open_repo": ".repository",
    "Checkout": ".records", "ModelSummary": ".records", "RepoStats": ".records",
    "VersionDescription": ".records", "VersionDiff": ".records", "VersionInfo": ".records",
    "load_metrics_file": ".metrics_file", "with_final_values": ".metrics_file",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
