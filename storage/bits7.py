"""Segment coding ``bits7``: a 7-bit field stored in exactly 7 bits per element.

The exponent-first layouts of float32, bfloat16 and float64 leave the top mantissa bits as one
7-bit field (bitfields.py) that is stored one element per byte. Those bits are noise at their
width: on all-MiniLM-L6-v2 zstd stores them at 0.87517 (float32) and 0.87513 (bfloat16) of a
byte per element, against the 0.875 of the bare bits, and it spends ~1.4 s per GB of a bfloat16
tensor to do it (its Huffman pass, then a failed match search) and ~0.8 s/GB to decode. Stored
as bits they take 7/8 of the field exactly and move at memory speed in both directions.

Layout of a blob for ``n`` elements, with ``t = n // 8`` (the *tail*: the last ``t`` elements)::

    length              n - t bytes = ceil(7n / 8)
    byte i, i < n - t   the 7 bits of element i (its low bits); its top bit is, for i < 7t,
                        bit (i // t) of tail element i % t (element n - t + i % t), and 0 for 7t <= i < n - t

That is, the first ``n - t`` elements are kept as bytes and the tail's seven bit planes are laid
over their free top bits one after another. In numpy every step is a contiguous
array operation (the planes are cut 64 bits at a time), where packing elements end to end
(8 values into 7 bytes) needs strided copies: ~4x slower in numpy.

Decoding checks the length and that the top bits past the tail's planes are zero (CorruptBlobError);
other damage, as in a raw segment, is caught by the tensor's hash, which every checkout verifies.
"""
from __future__ import annotations

import numpy as np

from . import kernels
from .errors import CodecError, CorruptBlobError

CODING = "bits7"
_TOP = np.uint8(0x80)
_LOW7 = np.uint8(0x7F)
_WIDE = "bits7 holds 7-bit fields; this segment has bytes of 128 or more"
_STRAY = "bits7 segment has bits set past its tail planes"
#: tail elements handled at a time (64 Ki): the seven planes of a block stay in cache
_BLOCK = 1 << 16


def packed_length(n: int) -> int:
    return n - n // 8


def _words(data: np.ndarray) -> np.ndarray:
    """``data`` (uint8) as little-endian 64-bit words, zero-padded to a whole word."""
    pad = (-data.size) % 8
    if pad:
        data = np.concatenate([data, np.zeros(pad, dtype=np.uint8)])
    return np.ascontiguousarray(data).view("<u8")


def encode_bits7(field: bytes | memoryview | np.ndarray, *, in_place: bool = False) -> memoryview:
    """The blob of a segment whose elements are all below 128 (a 7-bit field), as a view of a new
    buffer (not copied into ``bytes``: it is only hashed and written).

    ``in_place``: written over the start of ``field`` (a writable buffer the caller has no further
    use for) and viewing it: a commit saves a copy of the field and a new buffer. The layout
    allows it: byte i of the blob is element i with, for i < 7t, a tail bit in its top bit, and
    the tail (the last t elements) lies past the blob's n - t bytes, so it is read, never written."""
    values = np.frombuffer(field, dtype=np.uint8)
    if in_place and values.flags.writeable is False:
        raise CodecError("encode_bits7(in_place=True) needs a writable field")
    if kernels.LIB is not None:   # one pass in C (kernels.py)
        blob = kernels.bits7_encode(values, in_place)
        if blob is None:
            raise CodecError(_WIDE)
        return blob
    if values.max(initial=0) & _TOP:
        raise CodecError(_WIDE)
    n = values.size
    t = n // 8
    head = n - t
    if in_place:
        out = values[:head]
    else:
        out = np.empty(head, dtype=np.uint8)
        out[7 * t:] = values[7 * t:head]
    tail = _words(values[head:])
    for start in range(0, t, _BLOCK):   # in blocks of tail elements: the planes stay in cache
        stop = min(t, start + _BLOCK)
        words = tail[start // 8:(stop + 7) // 8]
        for b in range(7):   # bit b of every tail element -> the top bit of bytes [b*t, (b+1)*t)
            plane = (words << np.uint64(7 - b)) & np.uint64(0x8080808080808080)
            lo, hi = b * t + start, b * t + stop
            np.bitwise_or(values[lo:hi], plane.view(np.uint8)[:stop - start], out=out[lo:hi])
    return memoryview(out)


def check_length(blob: bytes, n: int, blob_hash: str) -> int:
    """The length a bits7 blob of ``n`` elements has (CorruptBlobError when it has another)."""
    expected = packed_length(n)
    if len(blob) != expected:
        raise CorruptBlobError(blob_hash, f"bits7 segment holds {len(blob)} bytes, expected {expected} for {n} elements")
    return expected


def decode_bits7(blob: bytes, n: int, blob_hash: str) -> memoryview:
    """The ``n`` field bytes of a ``bits7`` blob (``blob_hash`` names it in errors)."""
    expected = check_length(blob, n, blob_hash)
    if kernels.LIB is not None:   # one pass in C (kernels.py)
        out = kernels.bits7_decode(blob, n)
        if out is None:
            raise CorruptBlobError(blob_hash, _STRAY)
        return memoryview(out)
    packed = np.frombuffer(blob, dtype=np.uint8)
    t = n // 8
    if packed[7 * t:].max(initial=0) & _TOP:
        raise CorruptBlobError(blob_hash, _STRAY)
    out = np.empty(n, dtype=np.uint8)
    np.bitwise_and(packed, _LOW7, out=out[:expected])
    for start in range(0, t, _BLOCK):
        stop = min(t, start + _BLOCK)
        tail = np.zeros((stop - start + 7) // 8, dtype="<u8")
        for b in range(7):   # the top bits of bytes [b*t, (b+1)*t) are bit b of the tail elements
            plane = _words(packed[b * t + start:b * t + stop]) >> np.uint64(7 - b)
            plane &= np.uint64(0x0101010101010101 << b)
            tail |= plane
        out[expected + start:expected + stop] = tail.view(np.uint8)[:stop - start]
    return memoryview(out)   # bytes-like without a copy: readers take it with np.frombuffer
