"""Text -> AST. The only module (with :mod:`.lexicon`) that imports lark.

The grammar (grammar/dql.lark) is LALR(1) with positions propagated, so
every AST node carries its span. Lark's exceptions are turned into
:class:`DQLSyntaxError` with line:column, the source line, a caret and a hint
for the usual mistakes; no other exception escapes :func:`parse`.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
from functools import lru_cache
from importlib import resources
from pathlib import Path

import lark
from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from . import ast as A
from .errors import DQLSyntaxError, close_matches
from .lexicon import KEYWORDS, describe_terminal


@lru_cache(maxsize=1)
def _parser() -> Lark:
    """The LALR parser. Building its tables takes most of a cold query (~100 ms), so the built
    parser is kept in the user's cache folder, keyed by the grammar and the lark and Python
    versions; a missing, stale or unreadable cache file only means building it again."""
    text = resources.files("modelhub.grammar").joinpath("dql.lark").read_text(encoding="utf-8")
    key = hashlib.sha256(f"{text}\0{lark.__version__}\0{sys.version_info[:2]}".encode()).hexdigest()[:24]
    path = _cache_dir() / f"dql-parser-{key}.lark"
    try:
        with open(path, "rb") as fh:
            return Lark.load(fh)
    except Exception:       # noqa: BLE001 - no cache yet, or a damaged one: build the parser
        pass
    parser = Lark(text, parser="lalr", propagate_positions=True, maybe_placeholders=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile("wb", dir=path.parent, delete=False) as tmp:
            parser.save(tmp)
        os.replace(tmp.name, path)      # readers see the whole file or none
    except OSError:
        pass                # a read-only home: build it each time
    return parser


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "modelhub"


def parse(text: str) -> A.Statement:
    """Parse one DQL statement (an optional trailing `;` is allowed)."""
    if not isinstance(text, str):
        raise DQLSyntaxError("a DQL query must be a string; pass the query text")
    return _parse_text(text)


@lru_cache(maxsize=512)
def _parse_text(text: str) -> A.Statement:
    """The AST of ``text``, kept per text: a REPL or a service sends the same statements again and
    the tree is immutable (frozen dataclasses), so it can be shared; errors are not kept."""
    if not text.strip():
        raise DQLSyntaxError("empty query: write e.g. select m where m.name like \"resnet%\"")
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    except RecursionError:      # pragma: no cover - LALR parsing is iterative; a safety net
        raise DQLSyntaxError(TOO_DEEP_HINT) from None
    _check_nesting(text, tree)
    try:
        return _ToAst(text).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, DQLSyntaxError):
            raise exc.orig_exc from None
        # e.g. an integer literal too long for Python to convert
        raise DQLSyntaxError(f"cannot read the query: {exc.orig_exc}; shorten or fix the literal") from None
    except RecursionError:      # pragma: no cover - _check_nesting bounds the depth; a safety net
        raise DQLSyntaxError(TOO_DEEP_HINT) from None


#: how deeply `not`, `and`/`or` groups in parentheses and nested `from (select ...)` may nest
#: (docs/DQL.md, "Limits"); flat chains `a or b or c ...` count as one level however long
MAX_NESTING = 200
_NESTING_RULES = frozenset({"or_", "and_", "not_", "source_subquery", "arith"})
TOO_DEEP_HINT = (f"the query nests deeper than {MAX_NESTING} levels; write `not not x` as x and "
                 "long chains without parentheses (a or b or c ...)")


def _check_nesting(text: str, tree) -> None:
    """Refuse conditions nested deeper than MAX_NESTING, walking the tree without recursion
    (the transformer, binder and SQL compiler recurse once per level)."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, Tree):
            continue
        if node.data in _NESTING_RULES:
            depth += 1
            if depth > MAX_NESTING:
                meta = node.meta
                line = getattr(meta, "line", 1) or 1
                column = getattr(meta, "column", 1) or 1
                raise DQLSyntaxError(
                    f"query too deeply nested at line {line}, column {column}: more than {MAX_NESTING} levels "
                    f"of `not`, parentheses and sub-queries\n{caret_picture(text, line, column)}\n"
                    "hint: `not not x` is x, and a chain a or b or c ... needs no parentheses", line, column)
        stack.extend((c, depth) for c in node.children)


# ---- tree -> AST ----------------------------------------------------------------
def _span(meta) -> A.Span:
    return A.Span(meta.line, meta.column, meta.end_line, meta.end_column,
                  meta.start_pos, meta.end_pos)


def _tspan(tok: Token) -> A.Span:
    return A.Span(tok.line, tok.column, tok.end_line, tok.end_column, tok.start_pos, tok.end_pos)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0"}


def unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def unquote_like(token: str) -> str:
    """A like pattern: string escapes as in :func:`unquote`, except that `\\%` and `\\_` keep their
    backslash, the pattern's escape for a literal % or _ (`"a\\_b"` and `"a\\\\_b"` both match a_b)."""
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: "\\" + m.group(1) if m.group(1) in "%_"
                  else _ESCAPES.get(m.group(1), m.group(1)), body)


@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    # statements
    def start(self, meta, ch):
        return ch[0]

    def explain(self, meta, ch):
        return A.Explain(ch[0], _span(meta))

    def save_query(self, meta, ch):
        name, query = ch
        return A.SaveQuery(name, query, self.text[query.span.start:query.span.end], _span(meta))

    def saved_name(self, meta, ch):
        tok = ch[0]
        return unquote(tok) if tok.type == "STRING" else str(tok)

    # queries
    def select_query(self, meta, ch):
        items, rest = ch[0], ch[1:]
        source = where = limit = None
        order: tuple = ()
        group: tuple = ()
        having = join = None
        for c in rest:
            if c is None:
                continue
            kind, val = c
            if kind == "from":
                source, join = val
            elif kind == "where":
                where = val
            elif kind == "order":
                order = val
            elif kind == "limit":
                limit = val
            elif kind == "group":
                group = val
            elif kind == "having":
                having = val
        return A.SelectQuery(items, source, where, order, limit, _span(meta), group, having, join)

    def slice_query(self, meta, ch):
        target, source, where, assigns = ch
        return A.SliceQuery(str(target), source, _clause(where), assigns, _span(meta))

    def construct_query(self, meta, ch):
        target, source, where, muts = ch
        return A.ConstructQuery(str(target), source, _clause(where), muts, _span(meta))

    def evaluate_query(self, meta, ch):
        var, source, with_, where, vary, keep = ch
        return A.EvaluateQuery(str(var), source, with_, _clause(where), vary or (), keep, _span(meta))

    def select_list(self, meta, ch):
        return tuple(ch)

    def select_item(self, meta, ch):
        value, alias = ch
        return A.SelectItem(value, str(alias) if alias is not None else None, _span(meta))

    def from_clause(self, meta, ch):
        return ("from", (ch[0], None if ch[1] is None else str(ch[1])))

    def source_var(self, meta, ch):
        return A.SourceAll(str(ch[0]), _span(meta))

    def source_subquery(self, meta, ch):
        query, alias = ch
        if not isinstance(query, A.SelectQuery):
            raise DQLSyntaxError(
                f"line {query.span.line}, column {query.span.column}: only a select query can be "
                "nested in `from ( ... )`; run the inner query on its own first")
        return A.SourceSubquery(query, str(alias) if alias is not None else None, _span(meta))

    def source_saved(self, meta, ch):
        name, alias = ch
        return A.SourceSaved(unquote(name), str(alias) if alias is not None else None, _span(meta))

    def where_clause(self, meta, ch):
        return ("where", ch[0])

    def group_clause(self, meta, ch):
        return ("group", tuple(ch))

    def having_clause(self, meta, ch):
        return ("having", ch[0])

    def order_clause(self, meta, ch):
        return ("order", tuple(ch))

    def order_item(self, meta, ch):
        value, direction = ch
        desc = direction is not None and str(direction).lower() == "desc"
        return A.OrderItem(value, desc, _span(meta))

    def limit_clause(self, meta, ch):
        return ("limit", int(ch[0]))

    # conditions
    def or_(self, meta, ch):
        items = []
        for c in ch:
            items.extend(c.items if isinstance(c, A.Or) else [c])
        return A.Or(tuple(items), _span(meta))

    def and_(self, meta, ch):
        items = []
        for c in ch:
            items.extend(c.items if isinstance(c, A.And) else [c])
        return A.And(tuple(items), _span(meta))

    def not_(self, meta, ch):
        return A.Not(ch[-1], _span(meta))

    def comparison(self, meta, ch):
        left, op, right = ch
        op = "!=" if str(op) == "<>" else str(op)
        return A.Comparison(left, op, right, _span(meta))

    def like(self, meta, ch):
        negated = len(ch) == 3
        return A.Like(ch[0], unquote_like(ch[-1]), negated, _span(meta))

    def matches(self, meta, ch):
        negated = len(ch) == 3
        return A.Matches(ch[0], unquote(ch[-1]), negated, _span(meta))

    def descendant_of(self, meta, ch):
        return A.Lineage(ch[0], "descendant", unquote(ch[-1]), len(ch) == 3, _span(meta))

    def ancestor_of(self, meta, ch):
        return A.Lineage(ch[0], "ancestor", unquote(ch[-1]), len(ch) == 3, _span(meta))

    def arith(self, meta, ch):
        left, op, right = ch
        return A.Arith(left, str(op), right, _span(meta))

    def in_list(self, meta, ch):
        negated = len(ch) == 3
        return A.InList(ch[0], ch[-1], negated, _span(meta))

    def between(self, meta, ch):
        negated = len(ch) == 4
        return A.Between(ch[0], ch[-2], ch[-1], negated, _span(meta))

    def has(self, meta, ch):
        return A.Has(ch[0], ch[1], _span(meta))

    # values
    def call(self, meta, ch):
        return A.Call(str(ch[0]), ch[1], _span(meta))

    def path(self, meta, ch):
        root, steps = ch[0], ch[1:]
        return A.Path(str(root), tuple(steps), _span(meta))

    def attr(self, meta, ch):
        return A.Attr(str(ch[0]), _tspan(ch[0]))

    def subscript(self, meta, ch):
        return A.Subscript(unquote(ch[0]), _span(meta))

    def template(self, meta, ch):
        name = str(ch[0])
        args: list = []
        kwargs: list = []
        if len(ch) > 1 and ch[1] is not None:
            for a in ch[1]:
                if isinstance(a, tuple):
                    kwargs.append(a)
                else:
                    args.append(a)
        return A.Template(name, tuple(args), tuple(kwargs), _span(meta))

    def template_args(self, meta, ch):
        return list(ch)

    def positional_arg(self, meta, ch):
        return ch[0]

    def keyword_arg(self, meta, ch):
        return (str(ch[0]), ch[1])

    def literal_list(self, meta, ch):
        return tuple(c for c in ch if c is not None)

    def string(self, meta, ch):
        return A.Literal(unquote(ch[0]), _span(meta))

    def number(self, meta, ch):
        text = str(ch[0])
        value: int | float
        value = int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else float(text)
        return A.Literal(value, _span(meta))

    def true(self, meta, ch):
        return A.Literal(True, _span(meta))

    def false(self, meta, ch):
        return A.Literal(False, _span(meta))

    def null(self, meta, ch):
        return A.Literal(None, _span(meta))

    # mutations
    def assignments(self, meta, ch):
        return tuple(ch)

    def assignment(self, meta, ch):
        return A.Assignment(ch[0], ch[1], _span(meta))

    def mutations(self, meta, ch):
        return tuple(ch)

    def insert_mutation(self, meta, ch):
        return A.InsertMutation(ch[0], ch[1], _span(meta))

    def delete_edge_mutation(self, meta, ch):
        return A.DeleteEdge(ch[0], ch[2], _span(meta))

    def delete_node_mutation(self, meta, ch):
        return A.DeleteNode(ch[0], _span(meta))

    # evaluate
    def with_clause(self, meta, ch):
        return A.WithClause(str(ch[0]), unquote(ch[1]), _span(meta))

    def vary_clause(self, meta, ch):
        return tuple(ch)

    def vary_list(self, meta, ch):
        return A.VaryItem(ch[0], ch[1], _span(meta))

    def vary_auto(self, meta, ch):
        return A.VaryItem(ch[0], None, _span(meta))

    def keep_clause(self, meta, ch):
        per = None if ch[3] is None else str(ch[3])
        return A.KeepClause(int(ch[0]), ch[1], int(ch[2]), _span(meta), per)


def _clause(c):
    return None if c is None else c[1]


# ---- errors -----------------------------------------------------------------------
def caret_picture(text: str, line: int, column: int) -> str:
    lines = text.splitlines() or [""]
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    return f"  {src}\n  {' ' * max(column - 1, 0)}^"


def _syntax_error(text: str, exc: UnexpectedInput) -> DQLSyntaxError:
    line, column = getattr(exc, "line", 1), getattr(exc, "column", 1)
    if not isinstance(line, int) or line < 1:     # EOF errors carry -1
        lines = text.rstrip().splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
    expected: set[str] = set()
    hint = None
    if isinstance(exc, UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        what = f"unexpected character {ch!r}"
        expected = set(exc.allowed or ())
        if ch in "\"'":
            hint = f"unclosed string: end it with a matching {ch} on the same line"
        elif ch == "!":
            hint = "use `!=` for 'not equal' or `not` to negate a condition"
    elif isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        tok = exc.token
        what = f"unexpected {describe_terminal(tok.type, str(tok))}"
        expected = set(exc.expected or ())
        hint = _hint_for_token(tok, expected) or _hint_for_previous_word(text, tok.start_pos)
    else:
        what = "the query ends too early"
        expected = set(getattr(exc, "expected", None) or ())
        if "RPAR" in expected:
            hint = "a `(` is not closed: add `)`"
        elif "RSQB" in expected:
            hint = "a `[` is not closed: add `]`"
        elif "_MUTATE" in expected:
            hint = "slice and construct need a `mutate ...` clause"
    shown = sorted({describe_terminal(t) for t in expected if t not in ("WS", "COMMENT")})
    msg = f"syntax error at line {line}, column {column}: {what}\n{caret_picture(text, line, column)}"
    if shown:
        msg += "\nexpected " + (shown[0] if len(shown) == 1 else "one of: " + ", ".join(shown))
    msg += "\nhint: " + (hint or "compare with the examples in docs/DQL.md")
    return DQLSyntaxError(msg, line, column)


def _hint_for_previous_word(text: str, pos: int | None) -> str | None:
    """LALR may accept a misspelled keyword as a name and fail one token later: look back."""
    if pos is None:
        return None
    m = re.search(r"([A-Za-z_]\w*)\s*$", text[:pos])
    if not m or m.group(1).lower() in KEYWORDS.values():
        return None
    near = close_matches(m.group(1).lower(), KEYWORDS.values(), n=1, cutoff=0.75)
    return f"`{m.group(1)}` is not a keyword: did you mean `{near[0]}`?" if near else None


def _hint_for_token(tok: Token, expected: set[str]) -> str | None:
    if tok.type == "EQUAL" and "COMP_OP" in expected:
        return "`=` assigns (in mutate/with); to compare use `==`"
    if tok.type == "COMP_OP" and str(tok) == "==" and "EQUAL" in expected:
        return "in mutate and with clauses `=` assigns; write `=` instead of `==`"
    if tok.type == "NAME":
        word = str(tok).lower()
        expected_words = [KEYWORDS[t] for t in expected if t in KEYWORDS]
        near = close_matches(word, expected_words, n=1, cutoff=0.7) or close_matches(
            word, KEYWORDS.values(), n=1, cutoff=0.75)
        if near and near[0] != word:
            return f"did you mean the keyword `{near[0]}`?"
        if "_WHERE" in expected:
            return "missing `where` before the condition?"
    if "_WHERE" in expected and tok.type in ("NOT", "LPAR"):
        return "missing `where` before the condition?"
    if tok.type == "STRING" and "NAME" in expected and "_FROM" not in expected:
        return "names are written without quotes (strings are for values and layer patterns)"
    return None
