"""Evaluate configs: TOML or JSON files, DQL `vary` overrides on top.

A config names the dataset and the training recipe; ``net`` maps layer
patterns to per-layer learning-rate multipliers (``0`` freezes). See
docs/ENGINE.md for the format.
"""
from __future__ import annotations

import json
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package (pyproject: tomli; python_version < "3.11")
    import tomli as tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from ..sizes import size_bytes
from .errors import ConfigError
from .selectors import layer_matches

LOSSES = ("cross_entropy", "mse")
OPTIMIZERS = ("sgd", "adam", "adamw")
AUTO = "auto"
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")


@dataclass(frozen=True)
class LayerRule:
    pattern: str
    lr: float | str          # a multiplier of base_lr, or "auto" before expansion


@dataclass(frozen=True)
class Augmentation:
    """Stochastic preprocessing: whatever runs after it cannot be materialized."""
    hflip: bool = False
    noise_std: float = 0.0

    @property
    def active(self) -> bool:
        return self.hflip or self.noise_std > 0


@dataclass(frozen=True)
class EvalConfig:
    dataset: str | None = None                 # NAME, NAME@V, or a path to a .npz file
    loss: str = "cross_entropy"
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    base_lr: float = 0.01
    batch_size: int = 32
    epochs: int | None = None
    iterations: int | None = None
    net: tuple[LayerRule, ...] = ()
    normalize_mean: tuple[float, ...] | None = None   # deterministic preprocessing (part of the prefix hash)
    normalize_std: tuple[float, ...] | None = None
    augment: Augmentation = field(default_factory=Augmentation)
    seed: int = 0
    val_fraction: float = 0.2
    feature_dtype: str = "float32"             # "float16" only when asked: lossy
    storage_budget: int | None = None          # bytes of features/ this run may use; None = unlimited
    memory_budget: int = 256 * 2**20           # bytes for one extraction batch's activations
    device: str = "auto"                       # auto = cuda when available
    backend: str | None = None                 # local | ray (None: DLV_BACKEND, else local); docs/ENGINE.md
    ray_address: str | None = None             # ray://host:10001 or host:6379 (None: RAY_ADDRESS or a local cluster)
    features_url: str | None = None            # fsspec URL for materialized features (None: .dlv/features)
    memory_format: str = "auto"                # trainable layers: auto | contiguous | channels_last

    # -- derived ------------------------------------------------------------------
    def lr_multiplier(self, layer_name: str) -> float:
        """The last matching rule wins; layers no rule names train at 1x base_lr."""
        mult: float | str = 1.0
        for rule in self.net:
            if layer_matches(rule.pattern, layer_name):
                mult = rule.lr
        if mult == AUTO:
            raise ConfigError(
                f"the learning rate of layer {layer_name!r} is still 'auto'; "
                "expand the candidates with modelhub.engine.expand_auto first"
            )
        return float(mult)

    def validate(self) -> "EvalConfig":
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; use one of {', '.join(LOSSES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        if not (self.base_lr > 0):
            raise ConfigError(f"base_lr must be positive, got {self.base_lr!r}; set e.g. base_lr = 0.01")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}; set e.g. batch_size = 32")
        if self.epochs is None and self.iterations is None:
            raise ConfigError("the config sets neither epochs nor iterations; add e.g. epochs = 5")
        if self.epochs is not None and self.iterations is not None:
            raise ConfigError("the config sets both epochs and iterations; keep only one of them")
        if (self.epochs or 1) < 1 or (self.iterations or 1) < 1:
            raise ConfigError("epochs and iterations must be at least 1; fix the config")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be between 0 and 1, got {self.val_fraction}; use e.g. 0.2")
        if self.backend is not None and self.backend not in ("local", "ray"):
            raise ConfigError(f"backend must be local or ray, got {self.backend!r}")
        if self.memory_format not in MEMORY_FORMATS:
            raise ConfigError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {self.memory_format!r}")
        if self.feature_dtype not in ("float32", "float16"):
            raise ConfigError(f"feature_dtype must be float32 or float16, got {self.feature_dtype!r}")
        for rule in self.net:
            if rule.lr != AUTO and (not isinstance(rule.lr, (int, float)) or rule.lr < 0):
                raise ConfigError(
                    f'net["{rule.pattern}"].lr must be a number >= 0 or "auto", got {rule.lr!r}'
                )
        return self


def parse_size(value: Any, what: str = "storage_budget") -> int | None:
    """'500MB', '2GiB', 1048576, None/'unlimited' -> bytes; units are binary, as everywhere in dlv
    (modelhub/sizes.py: '500MB' is 500 * 1024**2 bytes)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "unlimited")):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{what} must be >= 0, got {value}")
        return int(value)
    n = size_bytes(str(value))
    if n is None:
        raise ConfigError(f"cannot read {what} {value!r}; write a size such as 500MB, 2GiB or 0 (1K = 1024 bytes)")
    return n


def load_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the config {p}: {exc.strerror}; check the path") from None
    try:
        if p.suffix.lower() == ".json":
            return json.loads(text)
        return tomllib.loads(text.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "JSON" if p.suffix.lower() == ".json" else "TOML"
        raise ConfigError(f"the config {p} is not valid {kind}: {str(exc).splitlines()[0]}; fix its syntax") from None


_SCALAR_KEYS = {
    "loss": str, "optimizer": str, "momentum": float, "weight_decay": float, "base_lr": float,
    "batch_size": int, "epochs": int, "iterations": int, "seed": int, "val_fraction": float,
    "feature_dtype": str, "device": str, "backend": str, "ray_address": str, "features_url": str,
    "memory_format": str,
}


def build_config(raw: Mapping[str, Any], overrides: tuple[tuple[tuple[str, ...], Any], ...] = ()) -> EvalConfig:
    """A validated EvalConfig from a parsed file plus DQL overrides (applied in order)."""
    fields: dict[str, Any] = {}
    net: list[LayerRule] = []
    for key, value in raw.items():
        _apply(fields, net, (key,) if key != "net" else ("net",), value)
    for path, value in overrides:
        _apply(fields, net, tuple(path), value)
    return replace(EvalConfig(**fields), net=tuple(net)).validate()


def _apply(fields: dict[str, Any], net: list[LayerRule], path: tuple[str, ...], value: Any) -> None:
    head = path[0] if path else ""
    if head in ("dataset", "input_data", "data"):
        fields["dataset"] = str(value)
    elif head == "net":
        if len(path) == 1:
            if not isinstance(value, Mapping):
                raise ConfigError('net must be a table of layer patterns, e.g. [net."conv*"] lr = 0')
            for pattern, sub in value.items():
                if not isinstance(sub, Mapping) or set(sub) - {"lr"}:
                    raise ConfigError(f'net["{pattern}"] may only set lr, e.g. net["{pattern}"].lr = 0')
                if "lr" in sub:
                    net.append(LayerRule(str(pattern), _lr_value(pattern, sub["lr"])))
        elif len(path) == 3 and path[2] == "lr":
            net.append(LayerRule(path[1], _lr_value(path[1], value)))
        else:
            raise ConfigError(f"cannot set config.{'.'.join(path)}; per-layer settings are net[\"PATTERN\"].lr")
    elif head in _SCALAR_KEYS and len(path) == 1:
        if value is None:
            fields[head] = None
            return
        try:
            fields[head] = _SCALAR_KEYS[head](value)
        except (TypeError, ValueError):
            raise ConfigError(f"config.{head} must be a {_SCALAR_KEYS[head].__name__}, got {value!r}") from None
    elif head == "storage_budget":
        fields["storage_budget"] = parse_size(value)
    elif head == "memory_budget":
        fields["memory_budget"] = parse_size(value, "memory_budget") or EvalConfig.memory_budget
    elif head == "normalize":
        if not isinstance(value, Mapping) or not {"mean", "std"} <= set(value):
            raise ConfigError("normalize must give mean and std, e.g. normalize = {mean = [0.5], std = [0.25]}")
        fields["normalize_mean"] = tuple(float(v) for v in _as_list(value["mean"]))
        fields["normalize_std"] = tuple(float(v) for v in _as_list(value["std"]))
        if any(s <= 0 for s in fields["normalize_std"]):
            raise ConfigError("normalize.std values must be positive; fix the config")
    elif head == "augment":
        if not isinstance(value, Mapping) or set(value) - {"hflip", "noise"}:
            raise ConfigError("augment accepts hflip (true/false) and noise (a std), e.g. augment = {hflip = true}")
        fields["augment"] = Augmentation(bool(value.get("hflip", False)), float(value.get("noise", 0.0)))
    else:
        raise ConfigError(
            f"unknown config key {'.'.join(path)!r}; known keys: dataset, loss, optimizer, base_lr, "
            "batch_size, epochs, iterations, net, normalize, augment, seed, storage_budget, backend, "
            "ray_address, features_url, memory_format (see docs/ENGINE.md)"
        )


def _lr_value(pattern: str, value: Any) -> float | str:
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        lr = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f'net["{pattern}"].lr must be a number >= 0 or "auto", got {value!r}') from None
    if lr < 0:
        raise ConfigError(f'net["{pattern}"].lr must be >= 0 (0 freezes), got {lr}')
    return lr


def _as_list(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else [v]
