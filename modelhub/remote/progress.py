"""Transfer progress: a rich progress bar on a terminal, nothing otherwise.

Operations take a :class:`Progress` and never print; the CLI passes a
:class:`RichProgress` only when stderr is a terminal and JSON was not asked
for. ``advance`` may be called from worker threads (rich locks internally).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Protocol, TextIO


class Task(Protocol):
    def advance(self, n: int) -> None: ...


class Progress(Protocol):
    def task(self, label: str, total: int | None): ...  # context manager yielding a Task


class _NullTask:
    def advance(self, n: int) -> None:
        pass


class NullProgress:
    @contextmanager
    def task(self, label: str, total: int | None) -> Iterator[_NullTask]:
        yield _NullTask()


NULL_PROGRESS = NullProgress()


class _RichTask:
    def __init__(self, bar, task_id) -> None:
        self._bar, self._id = bar, task_id

    def advance(self, n: int) -> None:
        self._bar.advance(self._id, n)


class RichProgress:
    """Byte-counting bars (size, speed, time left) on ``stream``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    @contextmanager
    def task(self, label: str, total: int | None) -> Iterator[_RichTask]:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress as Bar, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)

        bar = Bar(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=Console(file=self.stream), transient=False)
        with bar:
            yield _RichTask(bar, bar.add_task(label, total=total))


def terminal_progress(ui) -> Progress:
    """Bars on the CLI's stderr when it is a terminal and JSON output was not asked for."""
    return RichProgress(ui.err) if getattr(ui, "interactive", False) and not ui.json_mode else NULL_PROGRESS
