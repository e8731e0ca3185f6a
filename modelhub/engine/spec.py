"""The contract between DQL's `evaluate` and the engine.

DQL binds an ``evaluate`` query into an :class:`EvaluateSpec` (candidate
networks x hyperparameter grid, enumerated; a keep rule); the engine runs it.
Both sides import only this module of each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

#: A config path: ("base_lr",), ("input_data",), ("net", "conv*", "lr") for
#: `config.net["conv*"].lr`. Layer patterns use DQL's selector syntax.
ConfigPath = tuple[str, ...]

#: The hyperparameter evaluate writes on every version it commits: ``origin = "evaluate"``.
#: A source named without a where clause skips such versions (DQL), and users can select them
#: with ``where m.hparams.origin == "evaluate"``.
ORIGIN_KEY, ORIGIN_EVALUATE = "origin", "evaluate"


def path_text(path: ConfigPath) -> str:
    """``net["conv*"].lr`` or ``base_lr``: a config path as the query wrote it."""
    if path and path[0] == "net" and len(path) == 3:
        return f'net["{path[1]}"].{path[2]}'
    return ".".join(path)


def overrides_text(overrides: tuple[tuple[ConfigPath, Any], ...]) -> str:
    """``base_lr=0.003, net["_blocks.1[2,3]"].lr=0``: how results show a candidate's settings."""
    return ", ".join(f"{path_text(p)}={v!r}" for p, v in overrides)


@dataclass(frozen=True)
class Candidate:
    version_id: str                                   # the network (and initial weights) to train
    overrides: tuple[tuple[ConfigPath, Any], ...]     # applied on top of EvaluateSpec.base_config


@dataclass(frozen=True)
class KeepRule:
    k: int          # keep the k best candidates ...
    metric: str     # ... by this metric (lower is better for names containing 'loss'/'error', else higher)
    after: int      # ... after this many training iterations; only the kept ones continue
    per_dataset: bool = False   # the k best of each dataset; by default the k best over all candidates


@dataclass(frozen=True)
class EvaluateSpec:
    candidates: tuple[Candidate, ...]
    base_config: Mapping[str, Any] = field(default_factory=dict)
    config_source: str | None = None                  # path or saved name the config came from
    keep: KeepRule | None = None
    query_text: str = ""                              # recorded as the message of committed versions
    storage_budget: int | str | None = None           # `--storage-budget`: overrides the config's (bytes or "2GB")
    backend: str | None = None                        # `--backend local|ray`: overrides the config's / DLV_BACKEND
    ray_address: str | None = None                    # `--ray-address`: overrides the config's / RAY_ADDRESS
