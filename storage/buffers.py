"""A bytearray the decoder fills itself, allocated without zeroing it first.

``bytearray(n)`` writes n zeros that a decoder overwrites at once: 5% of the CPU time of a large
checkout (perf, 1.16 GB bfloat16). CPython's C API makes the same object without the zeros
(``PyByteArray_FromStringAndSize(NULL, n)`` leaves the contents unset); elsewhere, or if that
call is missing, this falls back to ``bytearray(n)``. Only for buffers that are filled completely
before anyone reads them.
"""
from __future__ import annotations

import ctypes
import sys


def _uninitialized():
    if sys.implementation.name != "cpython":
        return None
    try:
        new = ctypes.pythonapi.PyByteArray_FromStringAndSize
    except AttributeError:
        return None
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_char_p, ctypes.c_ssize_t]
    return new


_NEW = _uninitialized()


def unset_bytearray(n: int) -> bytearray:
    """A bytearray of ``n`` bytes whose contents are unset: the caller writes every one of them."""
    return _NEW(None, n) if _NEW is not None and n > 0 else bytearray(n)
