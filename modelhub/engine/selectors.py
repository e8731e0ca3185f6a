"""Layer-name patterns, in DQL's selector syntax, without importing DQL.

``conv*`` (``*`` = any run of characters, dots included), ``conv[1,3,5]``
(one of the listed alternatives) and plain names. A pattern selects a
parameter when it matches the owning layer's name or one of its ancestors
(``features`` selects ``features.0.weight``), so a block can be frozen whole.
"""
from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=1024)
def compile_layer_pattern(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "[":
            end = pattern.find("]", i)
            if end < 0:
                out.append(re.escape(ch))
            else:
                alts = [a.strip() for a in pattern[i + 1:end].split(",")]
                out.append("(?:" + "|".join(re.escape(a) for a in alts) + ")")
                i = end
        elif ch == "(" and re.match(r"\(\$\d+\)", pattern[i:]):
            # a DQL capture such as conv*($1) constrains nothing here
            i = pattern.index(")", i)
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


def layer_matches(pattern: str, layer_name: str) -> bool:
    rx = compile_layer_pattern(pattern)
    if rx.match(layer_name):
        return True
    parts = layer_name.split(".")
    return any(rx.match(".".join(parts[:i])) for i in range(1, len(parts)))
