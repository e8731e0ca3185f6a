"""Progressive inference (issue 6): exact top-k labels from the high-order bytes of the weights first.

    from modelhub.progressive import evaluate_module, evaluate_progressive
    report = evaluate_progressive(repo, "lenet", x, top_k=1)   # x: preprocessed records [N, ...]
    report.labels, report.bytes_fraction, report.levels

See docs/PROGRESSIVE.md for the bound rules and what is sound about them.
"""
from .api import evaluate_module
from .driver import ProgressiveConfig
from .errors import ProgressiveError, ProgressiveInputError, UnsupportedLayerError, WeightSourceError
from .plan import build_plan
from .report import LevelStat, ProgressiveReport
from .repo_source import evaluate_progressive, version_source
from .source import ManifestSource, TensorEntry, source_from_state_dict

__all__ = ["evaluate_module", "evaluate_progressive", "version_source", "ProgressiveConfig", "ProgressiveReport",
           "LevelStat", "ProgressiveError", "ProgressiveInputError", "UnsupportedLayerError", "WeightSourceError",
           "ManifestSource", "TensorEntry", "source_from_state_dict", "build_plan"]
