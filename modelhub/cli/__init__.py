"""`dlv`: the command-line interface. ``main(argv) -> int`` never raises for user mistakes."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import textwrap
from collections.abc import Mapping
from types import ModuleType
from typing import Iterator, Sequence, TextIO

from .. import __version__
from ..errors import ModelhubError
from .exitcodes import INTERRUPTED, USAGE, as_modelhub_error, exit_code_for
from .registry import COMMANDS, SUMMARIES
from .ui import UI


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and returns instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


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

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        sub = self._name_parser_map.get(values[0])
        if sub is not None and not getattr(sub, "_dlv_configured", False):
            mod = self.commands[values[0]]
            sub.description = getattr(mod, "DESCRIPTION", mod.HELP)
            mod.configure(sub)
            sub._dlv_configured = True
        super().__call__(parser, namespace, values, option_string)


def build_parser() -> tuple[argparse.ArgumentParser, Mapping[str, ModuleType]]:
    parser = _Parser(prog="dlv", description="dlv: version, query, archive and evaluate PyTorch models.")
    parser.add_argument("--version", action="version", version=f"dlv {__version__}")
    parser.register("action", "lazy_parsers", _LazySubcommands)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, action="lazy_parsers")
    handlers = sub.commands = _Commands()
    for name in handlers:
        p = sub.add_parser(name, help=handlers.summary(name), formatter_class=_HelpFormatter)
        p.add_argument("--repo", metavar="PATH", help="repository folder (default: nearest .dlv above the current folder)")
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return parser, handlers


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    ui = UI(out=out or sys.stdout, err=err or sys.stderr)
    parser, handlers = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except _UsageError as exc:
        ui.warn(f"error: {exc}")
        return USAGE
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    if not args.command:
        parser.print_help(ui.out)
        ui.warn("error: no command given; pick one of the commands above (dlv COMMAND --help for details)")
        return USAGE
    ui.json_mode = bool(getattr(args, "json", False))
    try:
        return int(handlers[args.command].run(args, ui) or 0)
    except ModelhubError as exc:
        ui.warn(f"error: {exc}")
        return exit_code_for(exc)
    except KeyboardInterrupt:
        ui.warn("interrupted")
        return INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the one boundary: DuckDB and full-disk failures get a one-line error too
        mapped = as_modelhub_error(exc)
        if mapped is None:
            raise
        ui.warn(f"error: {mapped}")
        return exit_code_for(mapped)


def entry_point() -> None:
    sys.exit(main())
