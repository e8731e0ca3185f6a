"""Packed byte planes: segment codings ``pack4`` and ``pack2``.

A float's exponent plane holds few distinct values: the weights of a layer span a handful of
binades, so ~15 consecutive exponent values cover 99.9% of them (2-4 bits of entropy in a
byte). zstd on such a plane is slow and loose: every short run of equal exponents is a chance
match that costs more than the literals it replaces, and its Huffman codes one symbol per byte,
which overshoots a skewed alphabet. Packed here, each element becomes a k-bit code (8/k codes per
byte, k = 4 or 2) for its offset in a window of 2^k - 1 consecutive byte values; the rare byte
outside the window is an *escape* (the code 2^k - 1) stored raw beside. zstd then sees a shorter
stream of pairs (or quads) whose Huffman codes come within a few percent of the pairs' entropy.

Measured on real weights (commit parameters, zstd level 1 with 7-byte matches), exponent planes:
all-MiniLM-L6-v2 float32 0.966x, bfloat16 0.965x, float16 0.921x of plain zstd's bytes. Packing and
compressing a plane takes ~0.55x the time of zstd on the plain plane (N(0, 0.02) bfloat16: 1.8 against
3.2 s per GB of plane, one thread); decoding costs about the same as plain zstd's (real float32
planes: 1.15 against 1.05 s/GB). On the exponent deltas of a bfloat16 fine-tune, k = 2 stores 0.74x
of the optimal-parse zstd the archive used. Where the window covers too little (a small network
trained from scratch: 2.5x worse), the encoder keeps plain zstd, so a segment is packed only when
that is expected (commits) or measured (the archive) to be smaller.

Blob layout (little-endian)::

    u8       lo        the window's first byte value: code c < 2^k - 1 stands for (lo + c) mod 256
    u64      escapes   how many elements are escapes
    escapes bytes      their bytes, in element order
    rest               one zstd frame: ceil(n * k / 8) bytes of codes, element i in byte i // (8/k)
                       at bits (i % (8/k)) * k, the low bits first; the padding codes are 0

Decoding checks every length and that the escapes named by the codes are exactly the escapes
stored, so a damaged or hostile blob fails with CorruptBlobError, never reads out of bounds.
"""
from __future__ import annotations

import struct

import numpy as np
import zstandard

from . import kernels
from .errors import CorruptBlobError

#: segment coding -> bits per code
CODINGS = {"pack4": 4, "pack2": 2}
_HEADER = struct.Struct("<BQ")


def best_window(hist: np.ndarray, bits: int) -> tuple[int, int]:
    """(lo, elements covered) of the 2^bits - 1 consecutive byte values (mod 256) holding most
    of the histogram's mass."""
    width = (1 << bits) - 1
    ring = np.concatenate([hist, hist[:width]]).cumsum()
    covered = ring[width - 1:width - 1 + 256] - np.concatenate([[0], ring[:255]])
    lo = int(np.argmax(covered))
    return lo, int(covered[lo])


#: a plane is packed this many elements at a time (256 KiB): temporaries stay in cache
_PACK_BLOCK = 1 << 18


def _pack_plane(plane: np.ndarray, bits: int, lo: int, empty=None) -> tuple[np.ndarray, bytes]:
    """(the packed codes, the escaped bytes in element order). Each element's code is its offset
    from ``lo`` (uint8 arithmetic wraps, so a window may straddle 255 -> 0), clipped to the
    escape code 2^bits - 1; then every 8/bits codes, as one little-endian word, are shifted
    into one byte. Done in cache-sized blocks (~2x faster than whole-plane temporaries)."""
    if kernels.LIB is not None:   # one pass in C (kernels.py)
        return kernels.pack_plane(np.ascontiguousarray(plane), bits, lo, empty)
    per = 8 // bits
    escape = np.uint8((1 << bits) - 1)
    pad = (-plane.size) % per
    if pad:   # padding codes are 0
        plane = np.concatenate([plane, np.full(pad, lo, dtype=np.uint8)])
    wide = np.dtype("<u2" if bits == 4 else "<u4")
    kind = wide.type
    low = kind((1 << bits) - 1)
    packed = empty(plane.size // per) if empty is not None else np.empty(plane.size // per, dtype=np.uint8)
    escapes = []
    for start in range(0, plane.size, _PACK_BLOCK):
        block = plane[start:start + _PACK_BLOCK]
        codes = block - np.uint8(lo)
        if codes.max(initial=0) >= escape:
            escapes.append(block[codes >= escape])
            np.minimum(codes, escape, out=codes)
        w = codes.view(wide)
        out = w & low
        for j in range(1, per):
            out |= (w >> kind((8 - bits) * j)) & kind(((1 << bits) - 1) << (bits * j))
        packed[start // per:(start + block.size) // per] = out
    return packed, b"".join(e.tobytes() for e in escapes)


#: codes are unpacked this many packed bytes at a time (64 KiB): temporaries stay in cache
_UNPACK_BLOCK = 1 << 16


def _unpack(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """The codes of ``n`` elements, one per byte. Each packed byte is widened to the word its
    8/bits codes fill (little-endian: code j in byte j), the copies shifted by (8 - bits) * j
    OR-ed together and masked; in cache-sized blocks this is ~3x faster than writing the
    codes column by column."""
    per = 8 // bits
    wide = np.dtype("<u2" if bits == 4 else "<u4")
    kind = wide.type
    mask = kind(0x0F0F if bits == 4 else 0x03030303)
    out = np.empty(packed.size, dtype=wide)
    for start in range(0, packed.size, _UNPACK_BLOCK):
        w = packed[start:start + _UNPACK_BLOCK].astype(wide)
        o = out[start:start + _UNPACK_BLOCK]
        np.left_shift(w, kind(8 - bits), out=o)
        for j in range(2, per):
            o |= w << kind((8 - bits) * j)
        o |= w
        o &= mask
    return out.view(np.uint8)[:n]


#: the escape scan reads this many 64-bit words at a time (1 MiB)
_SCAN_WORDS = 1 << 17
#: per code width: a word's bits where a code is all ones (its low bit), after the AND-folding below
_CODE_LOW_BITS = {4: np.uint64(0x1111111111111111), 2: np.uint64(0x5555555555555555)}


def _escape_positions(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """Element indices (ascending) of the escape codes among the first ``n``.

    Escapes are rare (~0.03% of an exponent plane), so they are found on the packed bytes, 8
    at a time as 64-bit words: a code is all ones exactly where AND-ing the word with itself
    shifted by 1 (and for 4-bit codes by 2 more) leaves its low bit set. Only the few words with
    a hit are looked at code by code. Comparing every unpacked code instead was ~2x slower.
    """
    per = 8 // bits
    whole = packed.size // 8 * 8
    words = packed[:whole].view("<u8")
    found = []
    for start in range(0, words.size, _SCAN_WORDS):   # in blocks: small temporaries, warm caches
        block = words[start:start + _SCAN_WORDS]
        folded = block >> np.uint64(1)
        folded &= block
        if bits == 4:
            folded &= folded >> np.uint64(2)
        folded &= _CODE_LOW_BITS[bits]
        hits = np.flatnonzero(folded) + start
        if hits.size:
            found.append(_escape_codes(words[hits].view(np.uint8), bits, 8 * per, hits))
    if whole < packed.size:   # the last bytes, fewer than 8
        tail = packed[whole:]
        found.append(_escape_codes(tail, bits, tail.size * per, np.array([whole // 8])))
    positions = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
    return positions[positions < n]   # padding codes are 0, never escapes; bounds anyway


def _escape_codes(chunks: np.ndarray, bits: int, codes_per_chunk: int, chunk_index: np.ndarray) -> np.ndarray:
    """Positions of the escape codes in equal chunks of packed bytes (chunk i starts at element
    ``chunk_index[i] * 8 * (8 // bits)``), ascending."""
    codes = _unpack(chunks, bits, chunks.size * (8 // bits)).reshape(-1, codes_per_chunk)
    rows, cols = np.nonzero(codes == np.uint8((1 << bits) - 1))
    return chunk_index[rows].astype(np.int64) * (8 * (8 // bits)) + cols


def encode_packed(plane: bytes | memoryview, bits: int, lo: int, cctx: zstandard.ZstdCompressor,
                  empty=None) -> bytes:
    """The blob of ``plane`` packed to ``bits``-bit codes in the window starting at ``lo``
    (the codes, before zstd, in an array from ``empty(nbytes)`` where given: a commit's scratch)."""
    packed, escapes = _pack_plane(np.frombuffer(plane, dtype=np.uint8), bits, lo, empty)
    frame = cctx.compress(packed)
    return b"".join((_HEADER.pack(lo, len(escapes)), escapes, frame))


def escape_mismatch(found: int, stored: int) -> str:
    return f"packed plane has {found} escape codes but stores {stored} escapes"


def packed_codes(blob: bytes, bits: int, n: int, blob_hash: str) -> tuple[int, memoryview, bytes]:
    """(lo, the stored escapes, the codes) of a packed blob of ``n`` elements, every length checked;
    whether the codes name exactly the stored escapes is checked where they are unpacked."""
    if len(blob) < _HEADER.size:
        raise CorruptBlobError(blob_hash, "packed plane is shorter than its header")
    lo, n_escapes = _HEADER.unpack_from(blob)
    if n_escapes > n or _HEADER.size + n_escapes > len(blob):
        raise CorruptBlobError(blob_hash, f"packed plane names {n_escapes} escapes for {n} elements")
    start = _HEADER.size + n_escapes
    size = (n * bits + 7) // 8
    try:
        packed = zstandard.ZstdDecompressor().decompress(memoryview(blob)[start:], max_output_size=max(size, 1))
    except zstandard.ZstdError as exc:
        raise CorruptBlobError(blob_hash, f"zstd: {exc}") from None
    if len(packed) != size:
        raise CorruptBlobError(blob_hash, f"packed plane decoded to {len(packed)} bytes, expected {size}")
    return lo, memoryview(blob)[_HEADER.size:start], packed


def decode_packed(blob: bytes, bits: int, n: int, blob_hash: str) -> memoryview:
    """The ``n`` plane bytes of a packed blob (``blob_hash`` names it in errors)."""
    lo, escapes, packed = packed_codes(blob, bits, n, blob_hash)
    n_escapes = len(escapes)
    codes = np.frombuffer(packed, dtype=np.uint8)
    if kernels.LIB is not None:   # one pass in C (kernels.py)
        plane, found = kernels.unpack_plane(codes, n, bits, lo, escapes)
        if found != n_escapes:
            raise CorruptBlobError(blob_hash, escape_mismatch(found, n_escapes))
        return memoryview(plane)
    escaped = _escape_positions(codes, bits, n)
    if escaped.size != n_escapes:
        raise CorruptBlobError(blob_hash, escape_mismatch(escaped.size, n_escapes))
    values = _unpack(codes, bits, n)
    values += np.uint8(lo)   # wraps mod 256, as the encoder's subtraction did
    if n_escapes:
        values[escaped] = np.frombuffer(escapes, dtype=np.uint8)
    return memoryview(values)   # bytes-like without a copy: readers take it with np.frombuffer
