"""Lossless deltas of a tensor's bit pattern against a base tensor's.

Every op is a bijection on words given the base, so decoding is exact:

- ``xor``:  d = x ^ b. Bits that did not change are zero; keeps the float
  field structure, so the float layout still applies.
- ``sub``:  d = zigzag(x - b) on the wrapping integers of the raw pattern.
- ``osub``: d = zigzag(ord(x) - ord(b)) where ``ord`` maps a float's pattern to
  an integer in the order of its value (sign-magnitude -> two's complement).
  The difference then counts ULPs between the two values, even across a sign
  change, so small updates give small integers whatever their carries — XOR
  turns a carry (0x..7fff -> 0x..8000) into many set bits. Floats only.

The zigzag step (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...) puts small magnitudes of
either sign into the low bits, so the high-order segments are mostly zero.
"""
from __future__ import annotations

import numpy as np

from .errors import CodecError, DamagedEncodingError, UnknownFormatError

DELTA_OPS = ("xor", "sub", "osub")


def _signed(words: np.ndarray) -> np.ndarray:
    return words.view(f"<i{words.itemsize}")


def _zigzag(d: np.ndarray) -> np.ndarray:
    bits = 8 * d.itemsize
    s = _signed(d)
    return ((s << s.dtype.type(1)) ^ (s >> s.dtype.type(bits - 1))).view(d.dtype)


def _unzigzag(z: np.ndarray) -> np.ndarray:
    one = z.dtype.type(1)
    # -(z & 1) as an all-ones or all-zeros word, written wrap-safe for unsigned types
    return (z >> one) ^ (np.zeros_like(z) - (z & one))


def _to_ordered(words: np.ndarray) -> np.ndarray:
    """Float pattern -> integer ordered like the float's value (a bijection)."""
    bits = 8 * words.itemsize
    s = _signed(words)
    # negative floats: flip the magnitude bits so larger magnitude = smaller int
    flip = (s >> s.dtype.type(bits - 1)).view(words.dtype) & words.dtype.type((1 << (bits - 1)) - 1)
    return words ^ flip


def _from_ordered(words: np.ndarray) -> np.ndarray:
    return _to_ordered(words)  # the map is an involution


def apply_delta(op: str, x: np.ndarray, base: np.ndarray) -> np.ndarray:
    if x.shape != base.shape or x.dtype != base.dtype:
        raise CodecError("a delta base must have the same dtype and shape as the tensor; "
                         "choose a base tensor of identical layout")
    with np.errstate(over="ignore"):
        if op == "xor":
            return x ^ base
        if op == "sub":
            return _zigzag(x - base)
        if op == "osub":
            return _zigzag(_to_ordered(x) - _to_ordered(base))
    raise CodecError(f"unknown delta op {op!r}; use one of {DELTA_OPS}")


def undo_delta(op: str, d: np.ndarray, base: np.ndarray) -> np.ndarray:
    if d.shape != base.shape or d.dtype != base.dtype:
        raise DamagedEncodingError("delta base has a different size than the delta; the base tensor "
                                   "named in the manifest is wrong or corrupt")
    with np.errstate(over="ignore"):
        if op == "xor":
            return d ^ base
        if op == "sub":
            return _unzigzag(d) + base
        if op == "osub":
            return _from_ordered(_unzigzag(d) + _to_ordered(base))
    raise UnknownFormatError(f"unknown delta op {op!r} in manifest")
