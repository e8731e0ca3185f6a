"""`dlv eval --select QUERY --progressive`: many versions on one dataset split, progressively.

The records come from the repository (``access``: its datasets), the weights
from ``weights`` -- the same repository's archive, or a remote's objects
(``modelhub.remote.weights``) -- so a selection can be evaluated where its
weights are published without pulling them. Preprocessing and the split are
those of `dlv eval` (the evaluate config's normalize / val_fraction).
"""
from __future__ import annotations

from typing import Any, Sequence


from ..progressive.access import VersionWeights
from ..progressive.fetch import BandwidthModel
from ..progressive.selection import Placement, ProgressCallback, SelectionReport, evaluate_selection
from .access import RepositoryAccess
from .config import build_config, load_config_file
from .errors import ConfigError
from .evaluate import progressive_records


def evaluate_selection_progressive(access: RepositoryAccess, weights: VersionWeights, refs: Sequence[str],
                                   data: str, *, split: str = "val", config: str | None = None, top_k: int = 1,
                                   compare: bool = True, bandwidth: BandwidthModel | None = None,
                                   placement: Placement = Placement(),
                                   progress: ProgressCallback | None = None,
                                   snapshots: bool = False) -> SelectionReport:
    """Progressive top-k labels of every version in ``refs`` on dataset ``data``'s ``split``."""
    if split not in ("val", "train", "all"):
        raise ConfigError(f"split must be val, train or all, got {split!r}")
    raw: dict[str, Any] = load_config_file(config) if config else {}
    raw.setdefault("epochs", 1)
    cfg = build_config(raw)
    _, _, x = progressive_records(access, data, cfg, split)
    return evaluate_selection(weights, refs, x, top_k, compare=compare, bandwidth=bandwidth,
                              placement=placement, progress=progress, snapshots=snapshots)
