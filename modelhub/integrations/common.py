"""What the framework callbacks share: opening the repository, scalars and hparams from framework objects."""
from __future__ import annotations

import math
import os
import re
from typing import Any, Mapping

from ..errors import InputError

_KEY = re.compile(r"[^A-Za-z0-9_.\-]")


def open_target(repo) -> Any:
    """A Repo, a path to one, or None (the repository above the current folder)."""
    from ..repo import Repo, open_repo
    if isinstance(repo, Repo):
        return repo
    if repo is None or isinstance(repo, (str, os.PathLike)):
        return open_repo(repo)
    raise InputError(f"repo must be a modelhub Repo, a path or None, not {type(repo).__name__}")


def scalars(values: Mapping[str, Any]) -> dict[str, float]:
    """The entries that are single numbers (Python, NumPy or 0-d/1-element tensors), as floats."""
    out = {}
    for key, value in values.items():
        if hasattr(value, "numel") and callable(value.numel):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
            continue
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def hparams_from(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """JSON-able hyperparameters: nested mappings flattened with dots, keys made valid, other values as text."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = _KEY.sub("_", f"{prefix}{key}")
        if isinstance(value, Mapping):
            out.update(hparams_from(value, f"{name}."))
        elif value is None or isinstance(value, (bool, int, str)):
            out[name] = value
        elif isinstance(value, float):
            out[name] = value if math.isfinite(value) else str(value)
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str)) for v in value):
            out[name] = list(value)
        else:
            out[name] = str(value)
    return out


def model_name(text: str) -> str:
    """A valid model name made from a class name or a folder name."""
    name = _KEY.sub("-", text).strip("-.") or "model"
    return name if name[0].isalpha() or name[0] == "_" else f"m-{name}"
