"""`dlv completion bash|zsh|fish`."""
from __future__ import annotations

from .completion import SHELLS, script

HELP = "print a shell completion script (commands and options) for bash, zsh or fish"
DESCRIPTION = """Examples:
  eval "$(dlv completion bash)"         # in ~/.bashrc
  eval "$(dlv completion zsh)"          # in ~/.zshrc
  dlv completion fish > ~/.config/fish/completions/dlv.fish"""


def configure(p) -> None:
    p.add_argument("shell", choices=SHELLS)


def run(args, ui) -> int:
    from . import build_parser  # the same parser `dlv` parses with, so the script never drifts from it
    ui.out.write(script(args.shell, build_parser(every_command=True)[0]))
    return 0
