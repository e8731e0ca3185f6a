"""Progressive inference (issue 6): exact top-k labels from the high-order bytes of the weights first.

    from modelhub.progressive import evaluate_module, evaluate_progressive
    from modelhub.repo.engine_access import engine_access
    report = evaluate_progressive(engine_access(repo), "lenet", x, top_k=1)   # x: preprocessed records [N, ...]
    report.labels, report.bytes_fraction, report.levels

See docs/PROGRESSIVE.md for the bound rules and what is sound about them.

The names below are imported on first use: the engine imports ``progressive.access``
(the repository reads it needs) without paying for the bound rules.
"""
from __future__ import annotations

from ..lazy import lazy_exports
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # the same names, for type checkers and readers
    from .access import StoredNetwork, StoredTensor, VersionWeights
    from .api import evaluate_module
    from .driver import ProgressiveConfig
    from .errors import ProgressiveError, ProgressiveInputError, UnsupportedLayerError, WeightSourceError
    from .plan import build_plan
    from .report import LevelStat, ProgressiveReport
    from .repo_source import evaluate_progressive, version_source
    from .source import ManifestSource, TensorEntry, source_from_state_dict

_EXPORTS = {
    "evaluate_module": "api", "ProgressiveConfig": "driver", "build_plan": "plan",
    "ProgressiveError": "errors", "ProgressiveInputError": "errors", "UnsupportedLayerError": "errors",
    "WeightSourceError": "errors", "LevelStat": "report", "ProgressiveReport": "report",
    "evaluate_progressive": "repo_source", "version_source": "repo_source",
    "ManifestSource": "source", "TensorEntry": "source", "source_from_state_dict": "source",
    "StoredNetwork": "access", "StoredTensor": "access", "VersionWeights": "access",
}

__all__ = ["evaluate_module", "evaluate_progressive", "version_source", "ProgressiveConfig", "ProgressiveReport",
           "LevelStat", "ProgressiveError", "ProgressiveInputError", "UnsupportedLayerError", "WeightSourceError",
           "ManifestSource", "TensorEntry", "source_from_state_dict", "build_plan", "StoredNetwork", "StoredTensor",
           "VersionWeights"]


__getattr__, __dir__ = lazy_exports(__name__, {name: f".{module}" for name, module in _EXPORTS.items()})
