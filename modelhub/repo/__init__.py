"""Repository operations, one module each; :class:`Repo` is their facade.

Names are exported lazily (PEP 562) so that importing the facade does not
import what only some operations need.
"""
from ..lazy import lazy_exports

_EXPORTS = {
    "Repo": ".repository", "init_repo": ".repository", "open_repo": ".repository",
    "Checkout": ".records", "ModelSummary": ".records", "RepoStats": ".records",
    "VersionDescription": ".records", "VersionDiff": ".records", "VersionInfo": ".records",
    "load_metrics_file": ".metrics_file", "with_final_values": ".metrics_file",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
