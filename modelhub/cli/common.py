"""Helpers shared by command modules."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .. import sizes

if TYPE_CHECKING:
    from torch import nn

    from ..repo import Repo


def repo_of(args) -> Repo:
    from ..repo import open_repo  # here: `dlv --help` and `dlv init --help` never open a repository

    return open_repo(args.repo)


def parse_value(text: str) -> Any:
    """`k=v` values: JSON when it parses (numbers, bools, lists), else the raw string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_pairs(items: list[str] | None, what: str) -> list[tuple[str, str]]:
    out = []
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise InputError(f"{what} {item!r} is not of the form key=value; e.g. --{what} lr=0.01")
        out.append((key.strip(), value.strip()))
    return out


def load_factory(spec: str) -> nn.Module:
    """`path/to/module.py:Factory` -> Factory(): the user's own code, named on the command line."""
    path_text, colon, attr = spec.rpartition(":")
    if not colon or not path_text or not attr:
        raise InputError(f"--model {spec!r} must be FILE.py:NAME, e.g. --model model.py:LeNet")
    path = Path(path_text)
    if not path.is_file():
        raise InputError(f"--model file {path} does not exist; check the path")
    mod_name = f"_dlv_user_model_{abs(hash(str(path.resolve())))}"
    spec_obj = importlib.util.spec_from_file_location(mod_name, path)
    if spec_obj is None or spec_obj.loader is None:
        raise InputError(f"--model file {path} is not a Python module")
    module = importlib.util.module_from_spec(spec_obj)
    sys.modules[mod_name] = module
    try:
        spec_obj.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's file failed: report it, no traceback
        raise InputError(f"importing {path} failed: {type(exc).__name__}: {exc}; fix the file and retry") from None
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise InputError(f"{path} defines no callable {attr!r}; name a class or function that builds the model")
    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"{attr}() in {path} failed: {type(exc).__name__}: {exc}") from None
    from torch import nn  # the user's model is a torch module: only commit --model pays for torch

    if not isinstance(model, nn.Module):
        raise InputError(f"{attr}() in {path} returned {type(model).__name__}, not an nn.Module")
    return model


def show_result_table(ui, result) -> None:
    """A query's rows (``QueryResult``) as ``ui.table``: colour on a terminal, else exactly
    ``result.format_table()``."""
    cells, numeric, footer = result.table_cells()
    ui.table(result.columns, cells, align_right=numeric, footer=footer)


parse_size = sizes.parse_size  # the commands' size arguments ('500M', '2G')
