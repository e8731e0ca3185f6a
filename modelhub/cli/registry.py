"""The commands of `dlv`, in the order `dlv --help` lists them.

Each name maps to module ``modelhub.cli.cmd_<name>`` defining ``HELP``
(one line), ``configure(parser)`` and ``run(args, ui) -> int``. A command
module that is absent (a capability not installed) is skipped.
"""
COMMANDS: tuple[str, ...] = (
    "init", "add", "status", "reset", "commit", "log", "list", "desc", "diff", "checkout", "copy", "tag", "rm", "mv", "stats",
    "archive", "eval", "query", "repl", "data", "remote", "publish", "search", "pull", "clone", "gc", "fsck", "completion",
)
