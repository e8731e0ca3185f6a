"""The compiled per-element loops (storage/_kernels.c), when the install built them.

``pip install`` compiles ``_kernels.c`` where a C compiler is present (setup.py: an optional
extension). It is plain C loaded with ctypes, which releases the GIL around each call, so the
tensors of a commit or a checkout are split, packed, unpacked and joined in parallel threads.
Each function returns exactly what the numpy code it replaces returns (bitfields.py,
planepack.py, bits7.py keep that code as the reference and the fallback; tests/test_kernels.py
compares them bit for bit), so a repository reads the same with or without the kernels.

``LIB`` is None without the compiled file, or with ``DLV_KERNELS=off`` in the environment
(to compare, or to rule the kernels out).

Measured with ``benchmarks/streaming.py --repeats 3 --large-gb 1.2`` on 2 cores, kernels on against
``DLV_KERNELS=off``, two interleaved rounds: a 1.16 GB sharded bfloat16 checkpoint committed through
the API at 692-763 MB/s against 368-596 (2.15-2.52 against 2.76-4.38 CPU-s/GB), cold checkout
377-486 against 295-455 MB/s; all-MiniLM-L6-v2 (float32) committed at 245-255 against 158-210 MB/s,
checked out at 413-469 against 247-353 MB/s. One thread alone gains less than that: split and join
run near this machine's memory bandwidth in blocked numpy too. Most of the gain is the GIL, which
numpy takes back between its many short operations per block.
"""
from __future__ import annotations

import ctypes
import importlib.machinery
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def _load() -> Optional[ctypes.CDLL]:
    if os.environ.get("DLV_KERNELS", "").lower() in ("off", "0", "no", "false"):
        return None
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = here / f"_kernels{suffix}"
        if path.is_file():
            try:
                lib = ctypes.CDLL(str(path))
            except OSError:
                return None   # built for another platform or damaged: the numpy code still works
            _declare(lib)
            return lib
    return None


def _declare(lib: ctypes.CDLL) -> None:
    p, size, i = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
    lib.mh_split_fields.argtypes = [p, size, i, i, p, p, p]
    lib.mh_join_fields.argtypes = [p, size, i, i, p, p, p]
    lib.mh_pack_plane.argtypes = [p, size, i, ctypes.c_uint8, p, p]
    lib.mh_pack_plane.restype = size
    lib.mh_unpack_plane.argtypes = [p, size, i, ctypes.c_uint8, p, size, p]
    lib.mh_unpack_plane.restype = size
    lib.mh_bits7_encode.argtypes = [p, size, p]
    lib.mh_bits7_decode.argtypes = [p, size, p]
    for name in ("mh_split_fields", "mh_join_fields", "mh_bits7_encode", "mh_bits7_decode"):
        getattr(lib, name).restype = i


LIB = _load()


def aligned(words: np.ndarray) -> bool:
    """Whether the kernels can take these words: contiguous and aligned to their size (a tensor
    mapped from a safetensors file need not be; numpy handles that case)."""
    return words.flags.c_contiguous and words.ctypes.data % words.itemsize == 0


def _address(buffer) -> int:
    """The address of a contiguous buffer (bytes, bytearray, memoryview or array), read-only ones too."""
    return np.frombuffer(buffer, dtype=np.uint8).ctypes.data if not isinstance(buffer, np.ndarray) else buffer.ctypes.data


def _layout_arrays(layout: Sequence[tuple[int, int]]):
    k = len(layout)
    return (ctypes.c_int * k)(*(s for s, _ in layout)), (ctypes.c_int * k)(*(w for _, w in layout))


def split_fields(words: np.ndarray, layout: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    n = words.size
    outs = [np.empty((n + 7) // 8 if w == 1 else n, dtype=np.uint8) for _, w in layout]
    shifts, widths = _layout_arrays(layout)
    pointers = (ctypes.c_void_p * len(outs))(*(o.ctypes.data for o in outs))
    if LIB.mh_split_fields(words.ctypes.data, n, words.itemsize, len(layout), shifts, widths, pointers):
        raise ValueError(f"split_fields: {len(layout)} fields are more than the kernel takes")
    return outs


def join_fields(segments: Sequence, layout: Sequence[tuple[int, int]], n: int, words: np.ndarray) -> None:
    """Fill ``words`` (n contiguous words) from the segments (lengths already checked)."""
    keep = [np.frombuffer(s, dtype=np.uint8) for s in segments]   # alive for the call
    shifts, widths = _layout_arrays(layout)
    pointers = (ctypes.c_void_p * len(keep))(*(k.ctypes.data for k in keep))
    if LIB.mh_join_fields(pointers, n, words.itemsize, len(layout), shifts, widths, words.ctypes.data):
        raise ValueError(f"join_fields: {len(layout)} fields are more than the kernel takes")


def pack_plane(plane: np.ndarray, bits: int, lo: int) -> tuple[np.ndarray, bytes]:
    n = plane.size
    packed = np.empty((n * bits + 7) // 8, dtype=np.uint8)
    escapes = np.empty(n, dtype=np.uint8)
    count = LIB.mh_pack_plane(plane.ctypes.data, n, bits, lo, packed.ctypes.data, escapes.ctypes.data)
    return packed, escapes[:count].tobytes()


def unpack_plane(packed: np.ndarray, n: int, bits: int, lo: int, escapes) -> tuple[np.ndarray, int]:
    """(the plane, how many escape codes its first ``n`` codes hold); the plane is right only when
    that count is ``len(escapes)``. ``packed`` holds ceil(n * bits / 8) bytes (checked by the caller)."""
    out = np.empty(n, dtype=np.uint8)
    found = LIB.mh_unpack_plane(packed.ctypes.data, n, bits, lo, _address(escapes) if len(escapes) else None,
                                len(escapes), out.ctypes.data)
    return out, found


def bits7_encode(values: np.ndarray) -> Optional[bytes]:
    """The bits7 blob, or None when a value is 128 or more."""
    n = values.size
    out = np.empty(n - n // 8, dtype=np.uint8)
    ok = LIB.mh_bits7_encode(values.ctypes.data, n, out.ctypes.data)
    return out.tobytes() if ok == 0 else None


def bits7_decode(blob: bytes, n: int) -> Optional[np.ndarray]:
    """The field, or None when a top bit past the tail's planes is set (length already checked)."""
    out = np.empty(n, dtype=np.uint8)
    ok = LIB.mh_bits7_decode(_address(blob) if blob else None, n, out.ctypes.data)
    return out if ok == 0 else None
