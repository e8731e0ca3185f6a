"""A new version that keeps its parent's weights (`dlv commit` without --weights or --model).

Used to record new hyperparameters, metrics or a message for weights already
stored. The parent is chosen and its weights read inside the commit's write
transaction: choosing it in an earlier read scope would let a concurrent
commit to the same model slip in between, and the new version would then
name a parent that is no longer the latest.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import duckdb
import torch

from ..catalog import versions as catalog_versions
from ..errors import InputError
from .refs import LATEST
from .hotcopy import HotCopies
from .reads import load_state_dict, version_header
from .refs import resolve

_GIVE_WEIGHTS = "give --weights FILE and/or --model FILE.py:Factory (in Python: repo.commit(model_or_state_dict, ...))"


def choose_parents(con: duckdb.DuckDBPyConnection, name: str,
                   parent: str | Sequence[str] | None = LATEST) -> tuple[str, ...]:
    """The version ids that ``parent`` names for a new version of ``name``, at least one.

    ``LATEST``: the newest version of ``name``; a reference or a list of them
    (merges); ``()`` or None: none, which leaves no weights to keep (InputError).
    """
    if parent == LATEST:
        latest = catalog_versions.latest_id(con, name)
        if latest is None:
            raise InputError(f"nothing to commit: model {name!r} has no version whose weights could be kept; "
                             + _GIVE_WEIGHTS)
        return (latest,)
    refs = (parent,) if isinstance(parent, str) else tuple(parent or ())
    if not refs:
        raise InputError("nothing to commit: " + _GIVE_WEIGHTS)
    return tuple(resolve(con, ref) for ref in refs)


def parent_state_dict(con: duckdb.DuckDBPyConnection, store, hot: HotCopies,
                      version_id: str) -> "OrderedDict[str, torch.Tensor]":
    """The last snapshot's weights of ``version_id``, from its hot copy when it has one."""
    return load_state_dict(con, store, version_id, hot=hot, header=version_header(con, version_id))
