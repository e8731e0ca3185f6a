"""The element types the archive stores (a leaf module: every codec and the tensor contract use it)."""
from __future__ import annotations

from typing import Mapping

#: bytes per element of every dtype the archive accepts (torch dtype names)
DTYPE_SIZES: Mapping[str, int] = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
    "complex64": 8, "complex128": 16,
    "float8_e4m3fn": 1, "float8_e5m2": 1, "uint16": 2, "uint32": 4, "uint64": 8,
}
