"""How long operations report progress: the contract between an operation and whoever shows it.

Operations (commit, checkout, eval, evaluate, archive, publish, pull) take a
:class:`Progress` and never print. ``task(label, total)`` measures work of a
known size (bytes, unless ``unit`` says otherwise) and ``message(text)`` names
the step under way. The CLI passes its terminal implementation
(modelhub/cli/ui.py, rich on stderr) only when stderr is a terminal and no JSON
was asked for; everywhere else :data:`NULL_PROGRESS` shows nothing. A leaf module:
the repository, engine and remote layers report here without importing rich.
``advance`` may be called from worker threads.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import ContextManager, Iterator, Protocol


class Task(Protocol):
    def advance(self, n: int) -> None: ...


class Progress(Protocol):
    def task(self, label: str, total: int | None, unit: str = "bytes") -> ContextManager[Task]: ...

    def message(self, text: str) -> None: ...


class _NullTask:
    def advance(self, n: int) -> None:
        pass


class NullProgress:
    """Shows nothing: the default of every operation."""

    @contextmanager
    def task(self, label: str, total: int | None, unit: str = "bytes") -> Iterator[_NullTask]:
        yield _NullTask()

    def message(self, text: str) -> None:
        pass


NULL_PROGRESS = NullProgress()
