"""Keywords and token classes of DQL, for error messages, highlighting and completion.

The REPL must not import lark; it asks :func:`tokenize` (which uses lark's
lexer internally, via the parser module) for highlighting spans.
"""
from __future__ import annotations

import re

#: grammar terminal -> keyword text
KEYWORDS: dict[str, str] = {
    "_EXPLAIN": "explain", "_SAVE": "save", "_QUERY": "query", "_AS": "as",
    "_SELECT": "select", "_SLICE": "slice", "_CONSTRUCT": "construct", "_EVALUATE": "evaluate",
    "_FROM": "from", "_WHERE": "where", "_MUTATE": "mutate", "_ORDER": "order", "_BY": "by",
    "_LIMIT": "limit", "_OR": "or", "_AND": "and", "NOT": "not", "_LIKE": "like", "_IN": "in",
    "_BETWEEN": "between", "_HAS": "has", "_TRUE": "true", "_FALSE": "false", "_NULL": "null",
    "_DELETE": "delete", "_EDGE": "edge", "_WITH": "with", "_VARY": "vary", "_AUTO": "auto",
    "_KEEP": "keep", "_TOP": "top", "_PER": "per",
    "_GROUP": "group", "_HAVING": "having", "_MATCHES": "matches", "_DESCENDANT": "descendant", "_ANCESTOR": "ancestor", "_OF": "of",
}
KEYWORD_WORDS = sorted(set(KEYWORDS.values()) | {"asc", "desc"})

#: words that are not keywords but have a meaning after a model variable
PROPERTIES = ("name", "id", "parent", "creation_time", "seq", "message", "author",
              "n_params", "n_layers", "n_tensors", "hparams", "metrics", "next", "prev", "insert",
              "input", "output", "root", "depth", "ancestors", "run_status")
FUNCTIONS = ("max", "min", "count", "avg", "sum")
TEMPLATES = ("CONV", "POOL", "RELU", "FC", "BN", "DROPOUT", "SOFTMAX", "FLATTEN")

_PUNCT = {
    "LPAR": "(", "RPAR": ")", "LSQB": "[", "RSQB": "]", "DOT": ".", "COMMA": ",",
    "EQUAL": "=", "SEMICOLON": ";", "ARROW": "->",
}


def describe_terminal(name: str, value: str | None = None) -> str:
    if name in KEYWORDS:
        return f"`{KEYWORDS[name]}`"
    if name in _PUNCT:
        return f"`{_PUNCT[name]}`"
    if name == "DIRECTION":
        return f"`{value.lower()}`" if value else "`asc`/`desc`"
    if name == "NAME":
        return f"name `{value}`" if value else "a name"
    if name == "STRING":
        return f"string {value}" if value else "a quoted string"
    if name in ("SIGNED_NUMBER", "INT"):
        return f"number {value}" if value else "a number"
    if name == "COMP_OP":
        return f"`{value}`" if value else "a comparison (==, !=, <, <=, >, >=)"
    if name == "ADD_OP":
        return f"`{value}`" if value else "arithmetic (+, -)"
    if name == "MUL_OP":
        return f"`{value}`" if value else "arithmetic (*, /)"
    if name == "$END":
        return "end of query"
    return f"`{value}`" if value else name


_TOKEN_RE = re.compile(r"""
    (?P<comment>--[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?)
  | (?P<number>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<>|<=|>=|->|[<>=;,.()\[\]])
  | (?P<space>\s+)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)


def tokenize(text: str) -> list[tuple[str, str]]:
    """(class, text) pairs covering ``text`` exactly; classes: keyword, template,
    function, property, name, string, number, operator, comment, space, other.
    Tolerant of incomplete input (an unclosed string runs to the end of its line)."""
    out: list[tuple[str, str]] = []
    prev_sig = ""
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup or "other"
        tok = m.group()
        if kind == "word":
            low = tok.lower()
            if prev_sig == "." :
                kind = "property"
            elif low in KEYWORD_WORDS:
                kind = "keyword"
            elif tok in TEMPLATES:
                kind = "template"
            elif low in FUNCTIONS:
                kind = "function"
            else:
                kind = "name"
        elif kind == "op":
            kind = "operator"
        out.append((kind, tok))
        if kind not in ("space", "comment"):
            prev_sig = tok
    return out
