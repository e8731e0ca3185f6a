"""Transfer progress for publish, pull and search: the contract of modelhub/progress.py.

Kept as the remote layer's import path; the terminal implementation (rich bars
on stderr) is the CLI's, :meth:`modelhub.cli.ui.UI.progress`.
"""
from __future__ import annotations

from ..progress import NULL_PROGRESS, NullProgress, Progress, Task

__all__ = ["NULL_PROGRESS", "NullProgress", "Progress", "Task", "terminal_progress"]


def terminal_progress(ui) -> Progress:
    """Bars on the CLI's stderr when it is a terminal and JSON output was not asked for."""
    return ui.progress()
