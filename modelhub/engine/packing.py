"""Several per-record tensors carried as one: the currency of stage boundaries.

A cut in a network can have more than one value flowing across it (a
transformer's hidden states and its attention mask; a multi-input record's
token ids and mask). Everything that moves features around (extraction, the
feature store, training batches, Ray) handles one ``(records, ...)`` float32
array, so such a boundary is carried as one: the bytes of each record's tensors
side by side, viewed as float32 words. Packing and unpacking copy bits and
never do arithmetic, so a round trip is bit-exact for any dtype; it must never
be cast (float16 features refuse packed boundaries).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

_WORD = 4   # bytes of one float32 word


@dataclass(frozen=True)
class Slot:
    shape: tuple[int, ...]      # per-record shape
    dtype: str                  # torch dtype name without "torch.", e.g. "int64"

    @property
    def nbytes(self) -> int:
        n = torch.empty((), dtype=_torch_dtype(self.dtype)).element_size()
        for s in self.shape:
            n *= s
        return n

    @property
    def padded(self) -> int:
        return -(-self.nbytes // _WORD) * _WORD


@dataclass(frozen=True)
class Layout:
    """The per-record tensors packed into one float32 row, in order."""
    slots: tuple[Slot, ...]

    @staticmethod
    def of(tensors: Sequence[torch.Tensor]) -> "Layout":
        return Layout(tuple(Slot(tuple(int(s) for s in t.shape[1:]), str(t.dtype).removeprefix("torch."))
                            for t in tensors))

    @property
    def words(self) -> int:
        return sum(s.padded for s in self.slots) // _WORD

    def describe(self) -> list[list]:
        return [[list(s.shape), s.dtype] for s in self.slots]

    @staticmethod
    def parse(described: Sequence) -> "Layout":
        return Layout(tuple(Slot(tuple(int(d) for d in shape), str(dtype)) for shape, dtype in described))

    def pack(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(tensors) != len(self.slots):
            raise ValueError(f"expected {len(self.slots)} tensors, got {len(tensors)}")
        b = tensors[0].shape[0]
        parts = []
        for t, slot in zip(tensors, self.slots):
            raw = t.detach().contiguous().reshape(b, -1).view(torch.uint8) if t.numel() else \
                t.new_zeros((b, 0), dtype=torch.uint8)
            if raw.shape[1] != slot.nbytes:
                raise ValueError(f"a record's tensor has {raw.shape[1]} bytes, the layout says {slot.nbytes}")
            if slot.padded != slot.nbytes:
                raw = torch.nn.functional.pad(raw, (0, slot.padded - slot.nbytes))
            parts.append(raw)
        return torch.cat(parts, dim=1).view(torch.float32)

    def unpack(self, packed: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b = packed.shape[0]
        raw = packed.contiguous().view(torch.uint8)
        out, at = [], 0
        for slot in self.slots:
            piece = raw[:, at:at + slot.nbytes].contiguous()
            out.append(piece.view(_torch_dtype(slot.dtype)).reshape((b, *slot.shape)))
            at += slot.padded
        return tuple(out)


def _torch_dtype(name: str) -> torch.dtype:
    dt = getattr(torch, name, None)
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dt


def pack_arrays(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, Layout]:
    """Multi-input records (``x0``, ``x1``, ... of a dataset) as one float32 word array."""
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    layout = Layout.of(tensors)
    return layout.pack(tensors).numpy(), layout
