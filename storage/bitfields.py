"""Bit-pattern segmentation: split fixed-width words into ordered bit fields.

A *layout* is a tuple of ``(shift, width)`` fields over the little-endian
unsigned bit pattern of each element; together the fields cover every bit
exactly once. A field of width 1 is stored as a packed bit plane (n/8 bytes),
every other field (width 2..8) as one byte per element. Segments are stored in
layout order, so the first segments hold the most significant information.

Float layouts are *exponent first*: the exponent field, then the sign plane,
then the mantissa from its top bits down. Measured against ZipNN's plain byte
grouping ([3],[2],[1],[0] for float32), giving the exponent its own byte saves
its low bit from being mixed into an otherwise incompressible mantissa byte,
and the sign plane costs exactly its entropy (see benchmarks/archive.py). float16 is the
exception: its 5-bit exponent travels with the two mantissa bits below it (_FLOAT16_LAYOUT).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from . import kernels
from .errors import CodecError

Layout = tuple[tuple[int, int], ...]

#: element size in bytes -> numpy unsigned type of the bit pattern
UINT_OF_SIZE: Mapping[int, np.dtype] = {
    1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8"),
}

#: IEEE-like float formats: (exponent bits, mantissa bits) — the sign is the top bit
FLOAT_FORMATS: Mapping[str, tuple[int, int]] = {
    "float64": (11, 52), "float32": (8, 23), "float16": (5, 10), "bfloat16": (8, 7),
    "float8_e4m3fn": (4, 3), "float8_e5m2": (5, 2),
}


def byte_layout(itemsize: int) -> Layout:
    """ZipNN-style byte grouping, most significant byte first."""
    return tuple((8 * i, 8) for i in reversed(range(itemsize)))


def _split_top_down(top: int, width: int) -> list[tuple[int, int]]:
    """Fields of at most 8 bits covering bits [top - width, top), highest first."""
    fields = []
    while width > 0:
        w = min(8, width)
        top -= w
        width -= w
        fields.append((top, w))
    return fields


def exponent_first_layout(dtype: str) -> Layout:
    """Exponent (top 8 bits of it first), sign plane, then mantissa top-down."""
    exp_bits, man_bits = FLOAT_FORMATS[dtype]
    fields = []
    exp_fields = _split_top_down(man_bits + exp_bits, exp_bits)
    fields.append(exp_fields[0])
    fields.append((man_bits + exp_bits, 1))  # sign
    rest_top = exp_fields[0][0]              # bits below the first exponent field
    # Align the remaining fields so that the last one ends at bit 0 with full
    # bytes: the lowest mantissa bytes are pure noise and should stay whole.
    first = rest_top % 8
    if first:
        fields.append((rest_top - first, first))
        rest_top -= first
    fields.extend(_split_top_down(rest_top, rest_top))
    return tuple(fields)


#: float16: its 5-bit exponent and the 2 mantissa bits below it as one 7-bit field (the top
#: byte without its sign), then the sign, then the low mantissa byte. Within a binade, weights
#: are not spread evenly, so the top mantissa bits follow the exponent: coded together they
#: took 0.4-0.8% fewer bytes than the exponent and the 2 bits apart, on all-MiniLM-L6-v2,
#: EfficientNet-Lite0, a small CNN and N(0, 0.02) weights cast to float16 (commit encoding).
_FLOAT16_LAYOUT: Layout = ((8, 7), (15, 1), (0, 8))


def default_layout(dtype: str, itemsize: int) -> Layout:
    if dtype == "float16":
        return _FLOAT16_LAYOUT
    if dtype in FLOAT_FORMATS:
        return exponent_first_layout(dtype)
    return byte_layout(itemsize)


def check_layout(layout: Sequence[Sequence[int]], itemsize: int) -> Layout:
    bits = 8 * itemsize
    covered = 0
    out = []
    for field in layout:
        shift, width = int(field[0]), int(field[1])
        if not (1 <= width <= 8 and 0 <= shift and shift + width <= bits):
            raise CodecError(f"invalid layout field {list(field)} for {bits}-bit elements; "
                             "fields must be 1..8 bits wide and inside the element")
        mask = ((1 << width) - 1) << shift
        if covered & mask:
            raise CodecError(f"layout field {list(field)} overlaps another; each bit must appear once")
        covered |= mask
        out.append((shift, width))
    if covered != (1 << bits) - 1:
        raise CodecError(f"layout {list(map(list, out))} does not cover all {bits} bits of the element")
    return tuple(out)


#: elements split at a time (64 Ki): the block's temporaries stay in cache
_SPLIT_BLOCK = 1 << 16


def split_fields(words: np.ndarray, layout: Layout, *, empty=None) -> list[np.ndarray]:
    """One contiguous uint8 array per field of ``layout`` (packed bits for 1-bit fields).

    Block by block, the words are shifted right by each field's offset and cast to uint8 (the
    cast keeps the low 8 bits) straight into the field's array, then masked. Whole-array
    temporaries made this 1.5-2x slower (bfloat16, float16, float32); transposing words into
    byte planes first was ~1.5x slower on float32. The fields are returned as arrays, not
    bytes: every consumer takes a buffer, and a copy of each was ~25% of the time.

    ``empty(nbytes)`` makes each field's array (default: a new one; a commit passes its scratch).
    """
    if kernels.LIB is not None and kernels.aligned(words):   # in C (kernels.py)
        return kernels.split_fields(words, layout, empty)
    n = words.size
    utype = words.dtype.type
    top = 8 * words.itemsize
    empty = empty or (lambda nbytes: np.empty(nbytes, dtype=np.uint8))
    outs = [empty(segment_length(n, width)) for _, width in layout]
    shifted = np.empty(min(n, _SPLIT_BLOCK), dtype=words.dtype)
    bits = np.empty(min(n, _SPLIT_BLOCK), dtype=np.uint8)
    for start in range(0, n, _SPLIT_BLOCK):
        stop = min(n, start + _SPLIT_BLOCK)
        block = words[start:stop]
        for (shift, width), out in zip(layout, outs):
            src = block
            if shift:
                src = np.right_shift(block, utype(shift), out=shifted[:stop - start])
            vals = bits[:stop - start] if width == 1 else out[start:stop]
            np.copyto(vals, src, casting="unsafe")   # keeps the low 8 bits
            if width < 8 and shift + width < top:
                vals &= np.uint8((1 << width) - 1)
            if width == 1:   # start is a multiple of 8: the block's bits start at a byte
                out[start // 8:(stop + 7) // 8] = np.packbits(vals, bitorder="little")
    return outs


def segment_length(n: int, width: int) -> int:
    return (n + 7) // 8 if width == 1 else n


#: elements joined at a time (64 Ki): the block's words and temporaries stay in cache
_JOIN_BLOCK = 1 << 16


def join_fields(segments: Sequence[bytes], layout: Layout, n: int, itemsize: int,
                out: bytearray | None = None) -> np.ndarray:
    """Inverse of :func:`split_fields`: rebuild ``n`` words from their fields (into ``out``, a
    buffer of ``n * itemsize`` bytes, when given: a decoder then returns it without a copy).
    ``segments`` may hold only the first fields of the layout (a progressive read): the bits of
    the others are 0.

    Block by block, every field is widened to the word type, shifted into place and OR-ed into
    the words. Assembling byte columns first and writing each with a strided copy was 1.25x
    (float32) to 2.4x (bfloat16) slower, and this is the hottest step of a checkout.
    """
    utype = UINT_OF_SIZE[itemsize]
    kind = utype.type
    fields = []
    for (shift, width), seg in zip(layout, segments):
        if len(seg) != segment_length(n, width):
            raise CodecError(f"segment of {len(seg)} bytes does not hold {n} fields of {width} bits")
        fields.append((shift, width, np.frombuffer(seg, dtype=np.uint8)))
    if out is None:
        words = np.empty(n, dtype=utype)
    elif len(out) != n * itemsize:
        raise CodecError(f"join_fields: the output buffer holds {len(out)} bytes, not {n} x {itemsize}")
    else:
        words = np.frombuffer(out, dtype=utype)
    if not fields:   # progressive reads may join none of the fields: every bit unknown, 0
        words[...] = 0
        return words
    if kernels.LIB is not None and kernels.aligned(words):   # in C (kernels.py)
        kernels.join_fields([seg for _, _, seg in fields], [(s, w) for s, w, _ in fields], n, words)
        return words
    scratch = np.empty(min(n, _JOIN_BLOCK), dtype=utype)
    for start in range(0, n, _JOIN_BLOCK):
        stop = min(n, start + _JOIN_BLOCK)
        block = words[start:stop]
        part = scratch[:stop - start]
        for i, (shift, width, vals) in enumerate(fields):
            if width == 1:   # start is a multiple of 8: the block's bits start at a byte
                vals = np.unpackbits(vals[start // 8:(stop + 7) // 8], count=stop - start, bitorder="little")
            else:
                vals = vals[start:stop]
            target = block if i == 0 else part
            target[...] = vals
            if shift:
                target <<= kind(shift)
            if i:
                block |= part
    return words
