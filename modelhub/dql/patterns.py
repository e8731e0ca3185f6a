"""Layer name patterns: `conv*`, `conv[1,3,5]`, `conv[1-3]`, captures `conv*($1)`.

A pattern matches a node's full name, or — when the pattern has no `.` — the
last dotted component of the name, so `conv1` finds `features.conv1`.
``($n)`` wraps the element right before it (a `*`, `?` or `[...]`) in
capture group n; mutate strings reuse it as ``$n``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..catalog.selection_terms import OPERATION_KINDS  # noqa: F401 - the kinds a pattern selects
from .errors import BindError


@dataclass(frozen=True)
class LayerPattern:
    text: str
    regex: str          # Python syntax, captures as named groups c1, c2, ...
    sql_regex: str      # the same without capture groups (RE2 for DuckDB)
    captures: tuple[int, ...]

    def compiled(self) -> re.Pattern:
        return _compile(self.regex)

    def match(self, name: str) -> re.Match | None:
        return _compile(self.regex).fullmatch(name)


@lru_cache(maxsize=4096)
def _compile(regex: str) -> re.Pattern:
    return re.compile(regex, re.DOTALL)


@lru_cache(maxsize=1024)
def compile_pattern(text: str) -> LayerPattern:
    if not text:
        raise BindError('empty layer pattern: write a layer name such as m["conv1"] or m["conv*"]')
    py: list[str] = []      # regex pieces, one per pattern element
    sql: list[str] = []
    captures: list[int] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "*":
            py.append(".*"); sql.append(".*"); i += 1
        elif ch == "?":
            py.append("."); sql.append("."); i += 1
        elif ch == "[":
            close = text.find("]", i)
            if close < 0:
                raise BindError(f'layer pattern "{text}": `[` at position {i + 1} is not closed; '
                                'write alternatives as conv[1,3,5]')
            alts = _alternatives(text, text[i + 1:close])
            piece = "(?:" + "|".join(re.escape(a) for a in alts) + ")"
            py.append(piece); sql.append(piece); i = close + 1
        elif ch == "(" and re.match(r"\(\$(\d+)\)", text[i:]):
            m = re.match(r"\(\$(\d+)\)", text[i:])
            n = int(m.group(1))
            if not py or py[-1] not in (".*", ".") and not py[-1].startswith("(?:"):
                raise BindError(f'layer pattern "{text}": a capture ($%d) must follow `*`, `?` or '
                                '`[...]`, e.g. conv*($1)' % n)
            if n in captures:
                raise BindError(f'layer pattern "{text}": capture ${n} is used twice; number them $1, $2, ...')
            captures.append(n)
            py[-1] = f"(?P<c{n}>{py[-1]})"
            i += len(m.group(0))
        else:
            py.append(re.escape(ch)); sql.append(re.escape(ch)); i += 1
    prefix = "" if "." in text else r"(?:.*\.)?"
    return LayerPattern(text, prefix + "".join(py), prefix + "".join(sql), tuple(captures))


def _alternatives(text: str, body: str) -> list[str]:
    out: list[str] = []
    for part in body.split(","):
        part = part.strip()
        if not part:
            raise BindError(f'layer pattern "{text}": empty alternative in [{body}]; write conv[1,3,5]')
        rng = re.fullmatch(r"(\d+)-(\d+)", part)
        if rng:
            lo, hi = int(rng.group(1)), int(rng.group(2))
            if hi < lo or hi - lo > 1000:
                raise BindError(f'layer pattern "{text}": range {part} is empty or too large')
            out.extend(str(k) for k in range(lo, hi + 1))
        else:
            out.append(part)
    return out


def substitute(template: str, match: re.Match, pattern: LayerPattern) -> str:
    """Replace $1, $2 ... in a mutate string by the captures of ``match``."""
    def repl(m: re.Match) -> str:
        n = int(m.group(1))
        if n not in pattern.captures:
            raise BindError(f'"{template}" uses ${n} but the pattern "{pattern.text}" has no capture '
                            f'($%d); add it, e.g. conv*($%d)' % (n, n))
        return match.group(f"c{n}") or ""
    return re.sub(r"\$(\d+)", repl, template)


def literal_hint(text: str) -> str:
    """The pattern without wildcards, for close-match suggestions."""
    return re.sub(r"\(\$\d+\)|[*?]|\[[^\]]*\]", "", text)
