"""`dlv repl`: an interactive DQL shell."""
from __future__ import annotations

from .common import repo_of

HELP = "interactive DQL shell (highlighting, completion, history; end a query with ;)"


def configure(p) -> None:
    pass


def run(args, ui) -> int:
    from ..repl import run_repl
    return run_repl(repo_of(args), out=ui.out)
