"""The per-record decision: is the top-k set certain under the output bounds?"""
from __future__ import annotations

import torch

from .rules import Box


def certify_topk(box: Box, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(certain[N] bool, labels[N, k]): the k classes with the largest centers are certain when the
    lower bound of each exceeds the upper bound of every other class (set semantics; strict, so
    ties are never certified)."""
    lo, hi = box.lo(), box.hi()
    labels = torch.topk(box.c, k, dim=1).indices
    chosen_lo = torch.gather(lo, 1, labels).min(dim=1).values
    others_hi = hi.scatter(1, labels, float("-inf")).max(dim=1).values
    certain = chosen_lo > others_hi
    if box.c.shape[1] == k:             # every class chosen: trivially certain
        certain = torch.ones_like(certain)
    return certain, labels
