"""Terminal output: aligned tables for people, JSON for machines.

Tables have one layout (modelhub/tables.py); on a terminal rich draws it with
colour, piped or redirected it is plain text, so scripts see the same columns.
rich's console is imported only then: `dlv log | head` does not pay for it.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Sequence, TextIO

from .. import tables


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

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]], *, align_right: Sequence[int] = (),
              footer: str | None = None) -> None:
        """Rows under ``headers`` (values formatted by :func:`fmt`), then ``footer`` (default: a
        "(no rows)" line when there are none)."""
        cells = [[fmt(c) for c in r] for r in rows]
        if self.terminal:
            self._rich_table(list(headers), cells, align_right)
        else:
            for line in tables.render(list(headers), cells, align_right=align_right):
                self.print(line)
        if footer is not None:
            self.print(footer)
        elif not cells:
            self.print("(no rows)")

    def _rich_table(self, headers: list[str], cells: list[list[str]], align_right: Sequence[int]) -> None:
        from rich import box
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold cyan")
        for i, h in enumerate(headers):
            table.add_column(Text(h), justify="right" if i in align_right else "left", overflow="fold")
        for r in cells:  # Text, not str: a '[' in a message or a name is not rich markup
            table.add_row(*(Text(c, style="dim" if c == "-" else "") for c in r))
        Console(file=self.out, highlight=False, soft_wrap=False).print(table)

    def kv(self, pairs: Iterable[tuple[str, Any]]) -> None:
        pairs = list(pairs)
        width = max((len(k) for k, _ in pairs), default=0)
        for k, v in pairs:
            self.print(f"{k.ljust(width)}  {fmt(v)}")

    @property
    def interactive(self) -> bool:
        return hasattr(self.err, "isatty") and self.err.isatty()

    @property
    def terminal(self) -> bool:
        """Standard output is a terminal and no JSON was asked for: tables in colour."""
        return not self.json_mode and hasattr(self.out, "isatty") and self.out.isatty()
