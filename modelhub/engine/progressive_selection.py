"""`dlv eval --select QUERY --progressive`: many versions on one dataset split, progressively.

The records come from the repository (``access``: its datasets), the weights
from ``weights`` -- the same repository's archive, or a remote's objects
(``modelhub.remote.weights``) -- so a selection can be evaluated where its
weights are published without pulling them. Preprocessing and the split are
those of `dlv eval` (the evaluate config's normalize / val_fraction).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..progressive.access import VersionWeights
from ..progressive.fetch import BandwidthModel
from ..progressive.selection import Placement, ProgressCallback, SelectionReport, evaluate_selection
from .access import RepositoryAccess
from .config import build_config, load_config_file
from .data import Preprocessing
from .errors import ConfigError
from .evaluate import _load_data


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
    view = _load_data(access, data, {})
    if view.layout is not None:
        raise ConfigError(f"dataset {view.meta.get('ref', view.name)} has records with several inputs; "
                          "progressive evaluation bounds networks of one float input: drop --progressive")
    train_idx, val_idx = view.split(cfg.val_fraction)
    idx = {"val": val_idx, "train": train_idx, "all": np.arange(view.n)}[split]
    x = Preprocessing.from_config(cfg).apply(view.x[idx])
    return evaluate_selection(weights, refs, x, top_k, compare=compare, bandwidth=bandwidth,
                              placement=placement, progress=progress, snapshots=snapshots)
