"""'did you mean ...' for mistyped commands and options (difflib close matches)."""
from __future__ import annotations

import argparse
import difflib
import re
from typing import Iterable, Sequence

_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)'")


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """' (did you mean X?)' or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(candidates), n=3, cutoff=0.6)
    if not close:
        return ""
    return f"; did you mean {' or '.join(repr(c) for c in close)}?"


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return [s for action in parser._actions for s in action.option_strings]  # noqa: SLF001 - argparse has no public list


def unknown_arguments_message(extras: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """'unrecognized arguments: --lmit' plus the command's close options."""
    options = option_strings(parser)
    hints = []
    for extra in extras:
        if extra.startswith("-"):
            hint = did_you_mean(extra.split("=", 1)[0], options)
            if hint:
                hints.append(f"{extra}:{hint.removeprefix(';')}")
    text = f"unrecognized arguments: {' '.join(extras)}"
    return f"{text} ({'; '.join(h.strip() for h in hints)})" if hints else text


_CHOOSE_FROM = re.compile(r"\(choose from (.*)\)\s*$")


def choice_hint(message: str) -> str:
    """For argparse's "invalid choice: 'lgo' (choose from 'init', 'log', ...)": the close choices."""
    m, listed = _INVALID_CHOICE.search(message), _CHOOSE_FROM.search(message)
    if not m or not listed:
        return ""
    return did_you_mean(m.group(1), re.findall(r"'([^']*)'", listed.group(1)))


def subparser_of(parser: argparse.ArgumentParser, command: str | None) -> argparse.ArgumentParser:
    """The parser of ``command`` (the top-level parser when there is none)."""
    for action in parser._actions:  # noqa: SLF001
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:  # noqa: SLF001
            return action.choices[command]
    return parser
