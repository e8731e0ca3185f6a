"""Terminal output: aligned tables for people, JSON for machines."""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Sequence, TextIO


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def to_json(value: Any) -> str:
    def default(o: Any) -> Any:
        if isinstance(o, datetime):
            return o.isoformat()
        if hasattr(o, "to_dict"):
            return o.to_dict()
        return str(o)
    return json.dumps(value, indent=2, default=default, allow_nan=True)


@dataclass
class UI:
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    json_mode: bool = False

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def json(self, value: Any) -> None:
        self.out.write(to_json(value) + "\n")

    def warn(self, text: str) -> None:
        self.err.write(text + "\n")

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]], *, align_right: Sequence[int] = ()) -> None:
        cells = [[fmt(c) for c in r] for r in rows]
        widths = [len(h) for h in headers]
        for r in cells:
            for i, c in enumerate(r):
                widths[i] = max(widths[i], len(c))
        def line(r: Sequence[str]) -> str:
            parts = [c.rjust(widths[i]) if i in align_right else c.ljust(widths[i]) for i, c in enumerate(r)]
            return "  ".join(parts).rstrip()
        self.print(line(headers))
        self.print("  ".join("-" * w for w in widths))
        for r in cells:
            self.print(line(r))
        if not cells:
            self.print("(no rows)")

    def kv(self, pairs: Iterable[tuple[str, Any]]) -> None:
        pairs = list(pairs)
        width = max((len(k) for k, _ in pairs), default=0)
        for k, v in pairs:
            self.print(f"{k.ljust(width)}  {fmt(v)}")

    @property
    def interactive(self) -> bool:
        return hasattr(self.err, "isatty") and self.err.isatty()
