"""Opt-in lossy encodings: float16, bfloat16 and k-bit quantization.

They are applied only when a :class:`LossyConfig` is passed explicitly; the
manifest then carries a ``lossy`` entry so that nobody mistakes the decoded
bytes for the committed ones. Each encoding turns the source floats into a
smaller *stored* tensor (which is then segmented and compressed losslessly)
and back into the source dtype on decode.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import CodecError

LOSSY_KINDS = ("float16", "bfloat16", "kbit")
LOSSY_SOURCES = ("float64", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class LossyConfig:
    kind: str        # one of LOSSY_KINDS
    bits: int = 8    # kbit only: 1..8 bits per value, a table of 2**bits values

    def __post_init__(self) -> None:
        if self.kind not in LOSSY_KINDS:
            raise CodecError(f"unknown lossy encoding {self.kind!r}; use one of {LOSSY_KINDS}")
        if self.kind == "kbit" and not 1 <= self.bits <= 8:
            raise CodecError(f"k-bit quantization needs 1..8 bits, got {self.bits}; pick a value in that range")

    def to_json(self) -> dict:
        return {"kind": self.kind, "bits": self.bits}

    @staticmethod
    def from_json(obj: dict) -> "LossyConfig":
        return LossyConfig(kind=str(obj["kind"]), bits=int(obj.get("bits", 8)))


def to_float64(raw: bytes, dtype: str) -> np.ndarray:
    if dtype == "float64":
        return np.frombuffer(raw, "<f8").copy()
    if dtype == "float32":
        return np.frombuffer(raw, "<f4").astype(np.float64)
    if dtype == "float16":
        return np.frombuffer(raw, "<f2").astype(np.float64)
    if dtype == "bfloat16":
        return (np.frombuffer(raw, "<u2").astype(np.uint32) << np.uint32(16)).view("<f4").astype(np.float64)
    raise CodecError(f"lossy encodings apply to float tensors only, not {dtype}; "
                     f"use a lossless encoding for it")


def from_float64(values: np.ndarray, dtype: str) -> bytes:
    if dtype == "float64":
        return values.astype("<f8").tobytes()
    if dtype == "float32":
        return values.astype("<f4").tobytes()
    if dtype == "float16":
        return values.astype("<f2").tobytes()
    if dtype == "bfloat16":
        return bfloat16_bits(values.astype("<f4")).tobytes()
    raise CodecError(f"cannot produce lossy output of dtype {dtype}")


def bfloat16_bits(f32: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (NaN stays NaN)."""
    u = f32.view("<u4")
    with np.errstate(over="ignore"):
        rounded = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype("<u2")
    nan = np.isnan(f32)
    rounded[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x40)).astype("<u2")  # keep it a (quiet) NaN
    return rounded


def quantization_table(values: np.ndarray, bits: int) -> np.ndarray:
    """2**bits representative values: the means of equal-population bins."""
    finite = np.sort(values[np.isfinite(values)])
    size = 1 << bits
    if finite.size == 0:
        return np.zeros(size, dtype=np.float64)
    chunks = np.array_split(finite, size)
    table = np.array([c.mean() if c.size else finite[-1] for c in chunks], dtype=np.float64)
    # a few Lloyd-Max iterations: equal-population bins waste levels in the dense
    # middle and leave the tails coarse
    for _ in range(8):
        idx = quantize(finite, table)
        sums = np.bincount(idx, weights=finite, minlength=size)
        counts = np.bincount(idx, minlength=size)
        table = np.sort(np.where(counts > 0, sums / np.maximum(counts, 1), table))
    return table


def quantize(values: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Index of the nearest table entry (table is sorted ascending)."""
    clean = np.where(np.isfinite(values), values, 0.0)
    right = np.clip(np.searchsorted(table, clean), 1, len(table) - 1)
    left = right - 1
    pick_left = np.abs(clean - table[left]) <= np.abs(table[right] - clean)
    return np.where(pick_left, left, right).astype(np.uint8)
