"""`dlv`: the command-line interface. ``main(argv) -> int`` never raises for user mistakes."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import textwrap
from collections.abc import Mapping
from types import ModuleType
from typing import Iterator, Sequence, TextIO

from .. import __version__
from ..errors import ModelhubError
from .error_report import report_error
from .exitcodes import INTERRUPTED, USAGE, as_modelhub_error, exit_code_for, help_epilog
from .global_options import add_global_options, merge_global_options, working_folder
from .registry import COMMANDS, SUMMARIES
from .ui import UI


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and returns instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from .suggest import choice_hint
        raise _UsageError(f"{self.prog}: {message}{choice_hint(message)} (see `{self.prog} --help`)")


class _UsageError(Exception):
    pass


class _HelpFormatter(argparse.HelpFormatter):
    """Keeps the line breaks of a command's description (its examples), wrapping each line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(
            textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent + "    ") if line.strip() else ""
            for line in text.splitlines()
        )


class _Commands(Mapping):
    """The command modules present in this build, by name, each imported on first use.

    Only the command that runs is imported: a command module may import heavy
    packages (torch, fsspec, lark), and `dlv log` should not pay for `dlv eval`'s.
    """

    def __init__(self) -> None:
        self._names = [n for n in COMMANDS if importlib.util.find_spec(f"{__name__}.cmd_{n}") is not None]
        self._loaded: dict[str, ModuleType] = {}

    def __getitem__(self, name: str) -> ModuleType:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._loaded:
            self._loaded[name] = importlib.import_module(f"{__name__}.cmd_{name}")
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def summary(self, name: str) -> str:
        return SUMMARIES.get(name) or self[name].HELP


class _LazySubcommands(argparse._SubParsersAction):
    """Configures a command's parser (its module's ``configure``) only once that command is chosen."""

    commands: _Commands

    def configure(self, name: str) -> None:
        sub = self._name_parser_map.get(name)
        if sub is not None and not getattr(sub, "_dlv_configured", False):
            mod = self.commands[name]
            sub.description = getattr(mod, "DESCRIPTION", mod.HELP)
            mod.configure(sub)
            sub._dlv_configured = True

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        self.configure(values[0])
        super().__call__(parser, namespace, values, option_string)


def build_parser(*, every_command: bool = False) -> tuple[argparse.ArgumentParser, Mapping[str, ModuleType]]:
    """The `dlv` parser and its command modules. Commands are configured when chosen;
    ``every_command`` configures all of them now (what shell completion walks)."""
    parser = _Parser(prog="dlv", description="dlv: version, query, archive and evaluate PyTorch models.",
                     epilog=help_epilog(), formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"dlv {__version__}")
    add_global_options(parser)
    parser.register("action", "lazy_parsers", _LazySubcommands)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, action="lazy_parsers")
    handlers = sub.commands = _Commands()
    for name in handlers:
        p = sub.add_parser(name, help=handlers.summary(name), formatter_class=_HelpFormatter)
        p.add_argument("--repo", metavar="PATH", help="repository folder (default: nearest .dlv above the current folder)")
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    if every_command:
        for name in handlers:
            sub.configure(name)
    return parser, handlers


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    ui = UI(out=out or sys.stdout, err=err or sys.stderr)
    argv = list(sys.argv[1:] if argv is None else argv)
    ui.json_mode = "--json" in argv  # usage errors are reported before the arguments are parsed
    parser, handlers = build_parser()
    try:
        args, extras = parser.parse_known_args(argv)
        if extras:
            from .suggest import subparser_of, unknown_arguments_message
            sub = subparser_of(parser, args.command)
            sub.error(unknown_arguments_message(extras, sub))
    except _UsageError as exc:
        return report_error(ui, str(exc), USAGE, "UsageError")
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    if not args.command:
        parser.print_help(ui.out)
        return report_error(ui, "no command given; pick one of the commands above (dlv COMMAND --help for details)",
                            USAGE, "UsageError")
    merge_global_options(args)
    ui.json_mode = args.json
    try:
        with working_folder(args):
            return int(handlers[args.command].run(args, ui) or 0)
    except ModelhubError as exc:
        return report_error(ui, str(exc), exit_code_for(exc), type(exc).__name__)
    except KeyboardInterrupt:
        ui.warn("interrupted")
        return INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the one boundary: DuckDB and full-disk failures get a one-line error too
        mapped = as_modelhub_error(exc)
        if mapped is None:
            raise
        return report_error(ui, str(mapped), exit_code_for(mapped), type(mapped).__name__)


def entry_point() -> None:
    one_blas_thread()
    sys.exit(main())


def one_blas_thread() -> None:
    """numpy's OpenBLAS starts a thread per core when numpy is imported; they spin for ~0.1 s of
    CPU and are joined at exit: `dlv stats` on 2 cores, 12 runs alternated, took 0.77 s wall and
    0.87 CPU-s with two, 0.74 and 0.74 with one. dlv does no numpy matrix products (its tensor
    math is torch's, with its own threads), so a `dlv` process gets one unless the user chose a
    number. Set before anything imports numpy, in the `dlv` process only: never in a program that
    calls main() or imports modelhub."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
