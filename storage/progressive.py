"""Progressive reads: bound every value of a float tensor from its first k segments.

Reading the first ``k`` segments of a format-2 manifest tells us some bits of
each element (the exponent first, then the sign, then the mantissa top-down).
The unknown bits can be anything, so the value lies between the patterns with
every unknown magnitude bit cleared and every unknown magnitude bit set:
IEEE magnitudes are monotonic in their unsigned bit pattern, denormals and
infinities included. The sign widens the magnitude range to an interval:
``[lo, hi] = [m_lo, m_hi]`` for a known +, ``[-m_hi, -m_lo]`` for a known -,
``[-m_hi, m_hi]`` when the sign is not yet read (so -0.0 lies in [-0.0, x]).

NaN has no place on the real line, so it is reported apart: ``maybe_nan`` is
true wherever the known bits allow a NaN (exponent possibly all ones and the
mantissa possibly non-zero); an element that is certainly NaN gets
``lo = hi = nan``. For every other element ``lo <= value <= hi`` holds (as
float64, which holds every float16/bfloat16/float32 exactly); if the exponent
may be all ones, ``hi`` (or ``-lo``) is infinite.

Delta-encoded tensors: the first segments of a *delta* say nothing about the
value without the base, so a progressive read of a delta manifest requires
``base=`` (the resolved base tensor's raw bytes by hash); it then decodes the
tensor exactly and returns the degenerate intervals ``[x, x]``. Tensors
stored whole (a storage plan with alpha = 1 keeps them so) are where
progressive reads are cheap. Lossy manifests are refused (their bits are not
the committed ones).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import numpy as np

from .bitfields import FLOAT_FORMATS, UINT_OF_SIZE, join_fields
from .errors import CodecError
from .segmented import CODEC_ID, decode_segmented, read_segments, stored_geometry

PROGRESSIVE_DTYPES = ("float64", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Intervals:
    lo: np.ndarray          # float64, flat, one per element
    hi: np.ndarray          # float64
    maybe_nan: np.ndarray   # bool: the known bits allow a NaN
    segments_read: int
    segments_total: int
    bytes_read: int         # compressed bytes fetched


def patterns_to_float64(words: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float64":
        return words.view("<f8").copy()
    if dtype == "float32":
        return words.view("<f4").astype(np.float64)
    if dtype == "float16":
        return words.view("<f2").astype(np.float64)
    if dtype == "bfloat16":
        return (words.astype(np.uint32) << np.uint32(16)).view("<f4").astype(np.float64)
    raise CodecError(f"no float view of dtype {dtype}")


def known_mask(layout, k: int, itemsize: int) -> int:
    mask = 0
    for shift, width in layout[:k]:
        mask |= ((1 << width) - 1) << shift
    return mask


def known_mantissa_bits(manifest: Mapping) -> list[Optional[int]]:
    """Per level (index k - 1) of a float tensor's field layout, the leading mantissa bits known after
    reading k segments; None at levels still missing part of the exponent or the sign."""
    dtype = manifest["dtype"]
    if dtype not in FLOAT_FORMATS:
        raise CodecError(f"mantissa bits are defined for float tensors, not {dtype}")
    exp_bits, man_bits = FLOAT_FORMATS[dtype]
    exp_mask = ((1 << exp_bits) - 1) << man_bits
    sign = 1 << (exp_bits + man_bits)
    out: list[Optional[int]] = []
    for k in range(1, len(manifest["layout"]) + 1):
        mask = known_mask(manifest["layout"], k, 0)
        if (mask & exp_mask) != exp_mask or not mask & sign:
            out.append(None)
            continue
        known = 0
        while known < man_bits and mask & (1 << (man_bits - 1 - known)):
            known += 1
        out.append(known)
    return out


def bounds_from_known_bits(words: np.ndarray, mask: int, dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, maybe_nan) for patterns whose bits outside ``mask`` are unknown (and zero in ``words``)."""
    exp_bits, man_bits = FLOAT_FORMATS[dtype]
    utype = words.dtype.type
    bits = 8 * words.itemsize
    mag_mask = utype((1 << (bits - 1)) - 1)
    exp_mask = utype(((1 << exp_bits) - 1) << man_bits)
    man_mask = utype((1 << man_bits) - 1)
    unknown = utype(~mask & ((1 << bits) - 1))

    min_mag = words & mag_mask
    max_mag = (words | unknown) & mag_mask
    may_be_special = (max_mag & exp_mask) == exp_mask          # exponent may be all ones
    maybe_nan = may_be_special & ((max_mag & man_mask) != 0)
    surely_nan = ((min_mag & exp_mask) == exp_mask) & ((min_mag & man_mask) != 0)
    # where inf/NaN is possible the upper magnitude is +inf (the inf pattern)
    hi_mag_words = np.where(may_be_special, exp_mask, max_mag).astype(words.dtype)
    lo_mag_words = np.where((min_mag & exp_mask) == exp_mask, exp_mask, min_mag).astype(words.dtype)
    lo_mag = patterns_to_float64(lo_mag_words, dtype)
    hi_mag = patterns_to_float64(hi_mag_words, dtype)

    sign_bit = 1 << (bits - 1)
    if mask & sign_bit:
        negative = (words >> utype(bits - 1)).astype(bool)
        lo = np.where(negative, -hi_mag, lo_mag)
        hi = np.where(negative, -lo_mag, hi_mag)
    else:
        lo, hi = -hi_mag, hi_mag.copy()
    lo[surely_nan] = np.nan
    hi[surely_nan] = np.nan
    return lo, hi, maybe_nan


def read_intervals(manifest: Mapping, fetch: Callable[[str], bytes], nbytes: int, k: int, *,
                   base: Optional[Callable[[str], bytes]] = None) -> Intervals:
    """Read only the first ``k`` segments and bound every element (see module doc)."""
    if manifest.get("codec") != CODEC_ID:
        raise CodecError("progressive reads need a segmented (format 2) tensor; re-encode it with "
                         "the segmented codec first")
    if manifest.get("lossy"):
        raise CodecError("progressive reads are defined on lossless tensors only; this one is lossy-encoded")
    dtype = manifest["dtype"]
    if dtype not in PROGRESSIVE_DTYPES:
        raise CodecError(f"progressive reads apply to float tensors ({', '.join(PROGRESSIVE_DTYPES)}), "
                         f"not {dtype}; decode it whole with decode_tensor")
    _, n, itemsize, layout = stored_geometry(manifest, nbytes)
    total = len(manifest["segments"])
    if not 0 <= k <= total:
        raise CodecError(f"k={k} segments requested but the tensor has {total}; use 0..{total}")

    if manifest.get("delta"):
        if base is None:
            raise CodecError("this tensor is stored as a delta, whose first segments do not bound its "
                             "values; pass base= to decode it exactly, or store the tensor whole")
        exact = patterns_to_float64(np.frombuffer(decode_segmented(manifest, fetch, nbytes, base=base),
                                                  dtype=UINT_OF_SIZE[itemsize]), dtype)
        return Intervals(exact, exact.copy(), np.isnan(exact), total, total, sum(manifest["sizes"]))

    if manifest.get("packing", "fields") != "fields":
        raise CodecError("progressive reads need bit-field segments; this tensor uses another packing — "
                         "decode it whole with decode_tensor")
    segments = read_segments(manifest, fetch, n, layout, k)
    words = join_fields(segments, layout[:k], n, itemsize)
    lo, hi, maybe_nan = bounds_from_known_bits(words, known_mask(layout, k, itemsize), dtype)
    return Intervals(lo, hi, maybe_nan, k, total, sum(manifest["sizes"][:k]))
