"""`dlv repl`: an interactive DQL shell on prompt_toolkit (no lark here: tokens come from modelhub.dql)."""
from .shell import ReplSession, run_repl

__all__ = ["ReplSession", "run_repl"]
