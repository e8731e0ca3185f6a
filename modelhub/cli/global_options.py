"""Options accepted before the command, as git's: `dlv -C DIR log`, `dlv --repo PATH --json list`."""
from __future__ import annotations

import argparse
import contextlib
import os
from typing import Iterator

from ..errors import InputError


def add_global_options(parser: argparse.ArgumentParser) -> None:
    # Own destinations: a subcommand's own --repo/--json (same names) must not be overwritten by these defaults.
    parser.add_argument("-C", dest="global_chdir", metavar="DIR",
                        help="run as if dlv was started in DIR (paths on the command line are relative to it)")
    parser.add_argument("--repo", dest="global_repo", metavar="PATH",
                        help="repository folder (default: nearest .dlv above the current folder)")
    parser.add_argument("--json", dest="global_json", action="store_true", help="print machine-readable JSON")


def merge_global_options(args: argparse.Namespace) -> None:
    """The command's own --repo/--json win; the global ones fill in what it left unset."""
    if getattr(args, "repo", None) is None:
        args.repo = args.global_repo
    args.json = bool(getattr(args, "json", False) or args.global_json)


@contextlib.contextmanager
def working_folder(args: argparse.Namespace) -> Iterator[None]:
    """`-C DIR`: the command runs inside DIR; the caller's folder is restored afterwards (main() may be
    called in-process, e.g. by tests)."""
    if args.global_chdir is None:
        yield
        return
    before = os.getcwd()
    try:
        os.chdir(args.global_chdir)
    except OSError as exc:
        raise InputError(f"-C {args.global_chdir}: cannot enter the folder ({exc.strerror}); check the path") from None
    try:
        yield
    finally:
        os.chdir(before)
