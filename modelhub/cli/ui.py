"""Terminal output: aligned tables for people, JSON for machines.

Tables have one layout (modelhub/tables.py); on a terminal rich draws it with
colour, piped or redirected it is plain text, so scripts see the same columns.
rich's console is imported only then: `dlv log | head` does not pay for it.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Sequence, TextIO

from .. import tables
from ..progress import NULL_PROGRESS, Progress
from ..sizes import human_bytes  # noqa: F401 - the commands import it from here


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

    def progress(self) -> Progress:
        """Where long operations report: rich bars and step messages on stderr when it is a
        terminal and no JSON was asked for, else nothing (modelhub/progress.py)."""
        return TerminalProgress(self.err) if self.interactive and not self.json_mode else NULL_PROGRESS

    def progress_messages(self):
        """:meth:`progress`'s step messages as the ``Callable[[str], None]`` that archive and query
        take, or None when nothing is shown."""
        progress = self.progress()
        return None if progress is NULL_PROGRESS else progress.message

    @property
    def terminal(self) -> bool:
        """Standard output is a terminal and no JSON was asked for: tables in colour."""
        return not self.json_mode and hasattr(self.out, "isatty") and self.out.isatty()


class _RichTask:
    """Shown only once the task has run for ``delay_s``: a commit of a small model stays silent."""

    def __init__(self, bar, task_id, delay_s: float) -> None:
        self._bar, self._id = bar, task_id
        self._show_at = time.monotonic() + delay_s
        self.shown = False

    def advance(self, n: int) -> None:
        self._bar.advance(self._id, n)
        if not self.shown and time.monotonic() >= self._show_at:
            self.shown = True
            self._bar.start()


class TerminalProgress:
    """modelhub.progress.Progress on a terminal: a rich bar per task (size, speed and time left
    for bytes; a count otherwise), and step messages as log lines. rich is imported on first use."""

    #: seconds a task runs before its bar appears
    delay_s = 0.5

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._console = None

    def _console_(self):
        if self._console is None:
            from rich.console import Console
            self._console = Console(file=self.stream, highlight=False)
        return self._console

    @contextmanager
    def task(self, label: str, total: int | None, unit: str = "bytes") -> Iterator[_RichTask]:
        from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress as Bar, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn, TransferSpeedColumn)

        columns = ((DownloadColumn(), TransferSpeedColumn()) if unit == "bytes"
                   else (MofNCompleteColumn(), TextColumn(unit)))
        bar = Bar(TextColumn("{task.description}"), BarColumn(), *columns, TimeElapsedColumn(), TimeRemainingColumn(),
                  console=self._console_(), transient=False)
        task = _RichTask(bar, bar.add_task(label, total=total), self.delay_s)
        try:
            yield task
        finally:
            if task.shown:
                bar.stop()

    def message(self, text: str) -> None:
        self._console_().log(text, markup=False)
