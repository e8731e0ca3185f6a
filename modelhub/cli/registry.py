"""The commands of `dlv`, in the order `dlv --help` lists them.

Each name maps to module ``modelhub.cli.cmd_<name>`` defining ``HELP``
(one line), ``configure(parser)`` and ``run(args, ui) -> int``. A command
module that is absent (a capability not installed) is skipped.
"""
COMMANDS: tuple[str, ...] = (
    "init", "add", "commit", "log", "list", "desc", "diff", "checkout", "copy", "stats",
    "archive", "eval", "query", "repl", "runs", "ui", "data", "remote", "publish", "search", "pull", "gc", "fsck",
)
