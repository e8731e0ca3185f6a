"""Byte sizes in arguments, settings and configs: the ONE parser ('500M', '2GiB', '1048576').

Units are binary everywhere, as in git's config (``core.bigFileThreshold = 512m``)
and as `dlv stats` prints them (KiB, MiB): K = 1024, M = 1024**2, G = 1024**3,
T = 1024**4. Each may be written bare, with B or with iB, in any case (``500M``,
``500MB``, ``500MiB``, ``500mb`` are all 524,288,000 bytes); a plain number is
bytes and may have a fraction (``1.5G``). The same text therefore means the same
size in ``dlv archive --budget``, ``dlv query --storage-budget``, an evaluate
config's ``storage_budget`` / ``memory_budget`` and ``DLV_HOT_MAX_BYTES``.

(``humanfriendly.parse_size`` was considered: it reads ``500M`` as decimal and
``500MiB`` as binary, the very ambiguity this module removes, and would add a
dependency for a dozen lines.)
"""
from __future__ import annotations

import re

from .errors import InputError

#: multiplier of each unit prefix ('' = bytes)
_PREFIXES = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([kmgt]?)(i?b?)\s*", re.IGNORECASE)

SIZE_HINT = "write bytes or a number with K, M, G or T (binary: 1K = 1024 bytes), e.g. 500M or 2GiB"


def size_bytes(text: str) -> int | None:
    """Bytes of a size text, or None when it is not one (callers word their own error)."""
    m = _SIZE.fullmatch(text or "")
    if not m:
        return None
    prefix, suffix = m.group(2).lower(), m.group(3).lower()
    if suffix in ("i", "ib") and not prefix:  # 'Mi' and 'MiB' are units, 'i' and 'iB' alone are not
        return None
    return int(float(m.group(1)) * _PREFIXES[prefix])


def parse_size(text: str) -> int:
    """'500M', '500MB', '500MiB' (all 524,288,000), '2G', '1048576' -> bytes (binary units)."""
    n = size_bytes(text)
    if n is None:
        raise InputError(f"size {text!r} is not understood; {SIZE_HINT}")
    return n


def human_bytes(n: float) -> str:
    """A byte count the way dlv prints one (binary units, as :func:`parse_size` reads them)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
