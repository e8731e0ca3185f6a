"""Human-readable byte sizes in arguments and settings ('500M', '2G', '1048576')."""
from __future__ import annotations

import re

from .errors import InputError

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
          "g": 1024**3, "gb": 1024**3, "gib": 1024**3, "t": 1024**4, "tb": 1024**4, "tib": 1024**4}


def parse_size(text: str) -> int:
    """'500MB', '2G', '1048576' -> bytes (binary units)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text or "")
    if not m or m.group(2).lower() not in _UNITS:
        raise InputError(f"size {text!r} is not understood; write bytes or a number with K, M, G or T (e.g. 500M)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
