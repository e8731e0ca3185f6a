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


def split_fields(words: np.ndarray, layout: Layout) -> list[np.ndarray]:
    """One contiguous uint8 array per field of ``layout`` (packed bits for 1-bit fields).

    Words of 4 or 8 bytes are first transposed into byte planes (one contiguous pass); every
    field is then cut from one or two planes with uint8 arithmetic. Shifting and masking whole
    words instead moved 4-8x the bytes: ~1.5x slower on float32. For 2-byte words it is the
    other way round (a shift of the words and a truncating cast per field: ~1.8x faster on
    bfloat16 than the planes). The fields are returned as arrays, not bytes: a copy of every
    field was ~25% of this function's time, and every consumer takes a buffer.
    """
    if words.itemsize <= 2:
        return _split_narrow(words, layout)
    itemsize = words.itemsize
    planes = np.ascontiguousarray(words.view(np.uint8).reshape(-1, itemsize).T)
    out = []
    for shift, width in layout:
        low, off = divmod(shift, 8)
        if off == 0 and width == 8:
            out.append(planes[low])
            continue
        vals = planes[low] >> np.uint8(off) if off else planes[low].copy()
        if off + width > 8:   # the field straddles two bytes: its high bits from the next plane
            vals |= planes[low + 1] << np.uint8(8 - off)   # uint8: bits above 8 fall off
        if width < 8 and off + width != 8:
            vals &= np.uint8((1 << width) - 1)
        out.append(np.packbits(vals, bitorder="little") if width == 1 else vals)
    return out


def _split_narrow(words: np.ndarray, layout: Layout) -> list[np.ndarray]:
    utype = words.dtype.type
    out = []
    for shift, width in layout:
        vals = (words >> utype(shift)).astype(np.uint8) if shift else words.astype(np.uint8)  # the cast keeps the low 8 bits
        if width < 8 and shift + width < 8 * words.itemsize:
            vals &= np.uint8((1 << width) - 1)
        out.append(np.packbits(vals, bitorder="little") if width == 1 else vals)
    return out


def segment_length(n: int, width: int) -> int:
    return (n + 7) // 8 if width == 1 else n


def join_fields(segments: Sequence[bytes], layout: Layout, n: int, itemsize: int,
                out: bytearray | None = None) -> np.ndarray:
    """Inverse of :func:`split_fields`: rebuild ``n`` words from their fields (into ``out``, a
    buffer of ``n * itemsize`` bytes, when given: a decoder then returns it without a copy).

    A byte that several fields share (float32's exponent straddles two) is assembled in a
    contiguous uint8 plane first; then every byte column of the words is written once.
    Updating the columns in place field by field (strided reads and writes, uint8
    temporaries per field) was ~1.7x slower, and it is the hottest step of a checkout.
    """
    utype = UINT_OF_SIZE[itemsize]
    parts: dict[int, list[np.ndarray]] = {}   # byte index -> the fields' bits in that byte

    for (shift, width), seg in zip(layout, segments):
        if len(seg) != segment_length(n, width):
            raise CodecError(f"segment of {len(seg)} bytes does not hold {n} fields of {width} bits")
        vals = np.frombuffer(seg, dtype=np.uint8)
        if width == 1:
            vals = np.unpackbits(vals, count=n, bitorder="little")
        low, off = divmod(shift, 8)
        parts.setdefault(low, []).append(np.left_shift(vals, np.uint8(off)) if off else vals)  # uint8: high bits fall off
        if off + width > 8:   # the field straddles two bytes: its high bits go to the next one
            parts.setdefault(low + 1, []).append(np.right_shift(vals, np.uint8(8 - off)))
    if out is None:
        columns = np.empty((n, itemsize), dtype=np.uint8)
    elif len(out) != n * itemsize:
        raise CodecError(f"join_fields: the output buffer holds {len(out)} bytes, not {n} x {itemsize}")
    else:
        columns = np.frombuffer(out, dtype=np.uint8).reshape(n, itemsize)
    for k in range(itemsize):
        column = parts.get(k, [np.uint8(0)])
        byte = column[0]
        for i, more in enumerate(column[1:]):
            byte = np.bitwise_or(byte, more) if i == 0 else np.bitwise_or(byte, more, out=byte)
        columns[:, k] = byte
    return columns.view(utype).reshape(n)
