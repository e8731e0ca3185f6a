"""Static order-0 rANS streams: the context coder's third stream coding (after raw and zstd).

Why: the context coder splits a tensor's delta into many short, skewed symbol streams (counts and
lead bytes per context group; median ~4k symbols on real fine-tunes). zstd stores each as a frame
with its own Huffman table: ~9 bytes of framing, a table, and a whole number of bits per symbol.
Measured on the EfficientNet-Lite0 fine-tune trajectory of benchmarks/archive_context.py: 1,555
such frames, 9.81 MB, 2.1% above the order-0 entropy of their streams. An arithmetic-precision
coder with a compactly coded table recovers most of that gap; the coder keeps, per stream, the
smallest of raw, zstd and rANS.

Stream (``n``, the number of symbols, is known to the reader)::

    u8 scale (8..12) | u8 last (highest symbol coded in the table)
    | table: for symbols 0..last, the Elias-gamma code of freq + 1 (MSB first; zero-padded to a byte)
    | payload: four u32 states (little-endian), then u16 words

The frequencies sum to 2^scale. The payload is ryg_rans's "word" layout with four interleaved
states (storage/_rans_kernels.c explains the coder): symbol i is coded by state i % 4, every
state starts at 2^16 in the encoder and must end there in the decoder, and every word is read
exactly once -- a damaged stream fails these checks (or the tensor's hash) and is never misread.

The compiled kernels encode and decode; this module keeps a pure-Python reference of both (the
decoder is the fallback where the kernels are not built: correct, ~100x slower). Without the
kernels the encoder is not tried (:func:`encode` returns None), so the context coder then writes
raw and zstd streams only: every build reads every repository, and an archive written without a
compiler is only a little larger.
"""
from __future__ import annotations

import math
import struct
from typing import Optional

import numpy as np

from . import kernels
from .buffers import unset_bytearray
from .errors import CorruptBlobError

MIN_SCALE, MAX_SCALE = 8, 12   # 2^12: the decoder's slot table stays in L1; finer cost 0.008% on the fine-tune
STATE_LOW = 1 << 16
LANES = 4
_STATES = struct.Struct("<4I")
_MAX_TABLE = (256 * (2 * (MAX_SCALE + 1) + 1) + 7) // 8   # every code at its longest


# -- the frequency table ----------------------------------------------------------------------

def normalize(hist: np.ndarray, scale: int) -> np.ndarray:
    """Frequencies summing to 2^scale, at least 1 for every symbol present, near proportional to ``hist``."""
    total = int(hist.sum())
    target = 1 << scale
    freq = np.where(hist > 0, np.maximum(1, (hist * target + total // 2) // total), 0).astype(np.int64)
    diff = target - int(freq.sum())
    # Move the rounding error onto the most frequent symbols: the smallest relative change.
    for s in np.argsort(-hist, kind="stable"):
        if diff == 0:
            break
        step = diff if diff > 0 else -min(-diff, int(freq[s]) - 1)
        freq[s] += step
        diff -= step
    return freq


def _gamma_bits(values: np.ndarray) -> np.ndarray:
    """Length in bits of the Elias-gamma code of every value (>= 1)."""
    return 2 * np.floor(np.log2(values)).astype(np.int64) + 1


def table_bytes(freq: np.ndarray, scale: int) -> bytes:
    present = np.flatnonzero(freq)
    last = int(present[-1])
    bits = "".join("0" * (v.bit_length() - 1) + format(v, "b") for v in (int(f) + 1 for f in freq[:last + 1]))
    bits += "0" * (-len(bits) % 8)
    return bytes((scale, last)) + int(bits, 2).to_bytes(len(bits) // 8, "big")


def parse_table(view: memoryview, blob_hash: str) -> tuple[np.ndarray, int, int]:
    """(frequencies, scale, length of header and table) of a stream; CorruptBlobError when damaged."""
    if len(view) < 2:
        raise CorruptBlobError(blob_hash, "an rANS stream is shorter than its header")
    scale, last = view[0], view[1]
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise CorruptBlobError(blob_hash, f"an rANS stream names scale {scale}")
    freq = np.zeros(256, dtype=np.uint32)
    table = view[2:2 + _MAX_TABLE]
    bits = int.from_bytes(table, "big")
    nbits = 8 * len(table)
    pos = 0                     # bits read from the top
    for s in range(last + 1):
        zeros = 0
        while pos + zeros < nbits and not (bits >> (nbits - 1 - pos - zeros)) & 1:
            zeros += 1
            if zeros > MAX_SCALE + 1:
                raise CorruptBlobError(blob_hash, "an rANS stream's frequency table is damaged")
        if pos + 2 * zeros + 1 > nbits:
            raise CorruptBlobError(blob_hash, "an rANS stream's frequency table is cut short")
        value = (bits >> (nbits - pos - 2 * zeros - 1)) & ((1 << (zeros + 1)) - 1)
        pos += 2 * zeros + 1
        freq[s] = value - 1
    if int(freq.sum(dtype=np.int64)) != 1 << scale:
        raise CorruptBlobError(blob_hash, "an rANS stream's frequencies do not add up")
    return freq, scale, 2 + (pos + 7) // 8


def _estimate(hist: np.ndarray, freq: np.ndarray, scale: int) -> float:
    """Bytes of a stream with this table: table, states, and the payload's ideal length."""
    present = hist > 0
    payload_bits = float((hist[present] * (scale - np.log2(freq[present]))).sum())
    last = int(np.flatnonzero(freq)[-1])
    table_bits = int(_gamma_bits(freq[:last + 1] + 1).sum())
    return 2 + math.ceil(table_bits / 8) + 4 * LANES + payload_bits / 8


def choose_scale(hist: np.ndarray) -> tuple[int, np.ndarray]:
    """The scale (and its frequencies) that makes the stream smallest: a finer scale codes the
    probabilities more exactly but costs ~2 table bits more per symbol present."""
    best = None
    top = min(MAX_SCALE, max(MIN_SCALE, int(hist.sum()).bit_length() + 1))
    for scale in range(MIN_SCALE, top + 1):
        freq = normalize(hist, scale)
        size = _estimate(hist, freq, scale)
        if best is None or size < best[0]:
            best = (size, scale, freq)
    assert best is not None
    return best[1], best[2]


# -- streams ----------------------------------------------------------------------------------

def encode(data, hist: Optional[np.ndarray] = None) -> Optional[bytes]:
    """The rANS stream of ``data`` (non-empty), or None where the compiled kernels are not built."""
    if kernels.LIB is None or not len(data):
        return None
    if hist is None:
        hist = kernels.byte_histogram(data)
    scale, freq = choose_scale(hist)
    return table_bytes(freq, scale) + bytes(kernels.rans_encode(data, freq, scale))


def decode(stream, n: int, blob_hash: str) -> bytes | bytearray:
    """The ``n`` symbols of an rANS stream; CorruptBlobError (naming ``blob_hash``) when it is damaged."""
    if kernels.LIB is not None:
        out = unset_bytearray(n)     # the kernel writes every symbol (or the result is dropped)
        if not kernels.rans_decode(stream, np.frombuffer(out, dtype=np.uint8)):
            raise CorruptBlobError(blob_hash, "an rANS stream is damaged")
        return out
    view = memoryview(stream)
    freq, scale, start = parse_table(view, blob_hash)
    out_ref = decode_payload_reference(view[start:], freq, scale, n)
    if out_ref is None:
        raise CorruptBlobError(blob_hash, "an rANS stream is damaged")
    return out_ref


# -- the reference (pure Python; tests compare the kernels with it) ----------------------------

def _starts(freq: list[int]) -> list[int]:
    out, total = [], 0
    for f in freq:
        out.append(total)
        total += f
    return out


def encode_payload_reference(data: bytes, freq: np.ndarray, scale: int) -> bytes:
    f = [int(v) for v in freq]
    start = _starts(f)
    x = [STATE_LOW] * LANES
    words: list[int] = []
    for i in range(len(data) - 1, -1, -1):
        s, k = data[i], i % LANES
        v = x[k]
        if v >= f[s] << (32 - scale):
            words.append(v & 0xFFFF)
            v >>= 16
        x[k] = ((v // f[s]) << scale) + v % f[s] + start[s]
    words.reverse()
    return _STATES.pack(*x) + struct.pack(f"<{len(words)}H", *words)


def decode_payload_reference(payload, freq: np.ndarray, scale: int, n: int) -> Optional[bytes]:
    """The ``n`` symbols, or None when the payload is damaged (the kernel's checks, in the same order)."""
    if len(payload) < 4 * LANES or len(payload) % 2:
        return None
    x = list(_STATES.unpack_from(payload, 0))
    if min(x) < STATE_LOW:
        return None
    f = [int(v) for v in freq]
    start = _starts(f)
    sym = np.repeat(np.arange(256, dtype=np.uint8), freq).tolist()
    words = struct.unpack_from(f"<{(len(payload) - 16) // 2}H", payload, 16)
    mask, w = (1 << scale) - 1, 0
    out = bytearray(n)
    for i in range(n):
        k = i % LANES
        v = x[k]
        slot = v & mask
        s = sym[slot]
        out[i] = s
        v = f[s] * (v >> scale) + slot - start[s]
        if v < STATE_LOW:
            if w >= len(words):
                return None
            v = (v << 16) | words[w]
            w += 1
        x[k] = v
    return bytes(out) if w == len(words) and x == [STATE_LOW] * LANES else None
