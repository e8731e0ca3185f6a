"""Parser: the four ModelHub queries, spans, error hints, and fuzzing (only DQL errors escape)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelhub.dql import DQLSyntaxError, parse
from modelhub.dql import ast as A
from modelhub.dql.lexicon import KEYWORD_WORDS, tokenize

MODELHUB = [
    '''select m1 where m1.name like "alexnet_%" and m1.creation_time > "2015-11-22"
              and m1["conv[1,3,5]"].next has POOL("MAX")''',
    'slice m2 from m1 where m1.name like "alexnet-origin%" mutate m2.input = m1["conv1"] and m2.output = m1["fc7"]',
    '''construct m2 from m1 where m1.name like "alexnet-avgv1%" and m1["conv*($1)"].next has POOL("AVG")
              mutate m1["conv*($1)"].insert = RELU("relu$1")''',
    '''evaluate m from "query3" with config = "path to config"
              vary config.base_lr in [0.1, 0.01, 0.001] and config.net["conv*"].lr auto
              and config.input_data in ["path1", "path2"] keep top(5, m["loss"], 100)''',
]


@pytest.mark.parametrize("text", MODELHUB)
def test_modelhub_queries_parse_verbatim(text: str) -> None:
    stmt = parse(text)
    assert type(stmt).__name__ == ["SelectQuery", "SliceQuery", "ConstructQuery", "EvaluateQuery"][MODELHUB.index(text)]


def test_spans_point_into_the_source() -> None:
    text = MODELHUB[0]
    stmt = parse(text)
    has = stmt.where.items[2]
    assert isinstance(has, A.Has)
    assert text[has.span.start:has.span.end] == 'm1["conv[1,3,5]"].next has POOL("MAX")'
    assert (has.span.line, has.span.column) == (2, 19)
    assert text[has.template.span.start:has.template.span.end] == 'POOL("MAX")'


def test_keywords_are_case_insensitive_and_names_may_look_like_keywords() -> None:
    stmt = parse('SELECT m WHERE m.hparams.limit == 3 AND m.metrics["select"] > 0 ORDER BY m.seq DESC LIMIT 2;')
    assert stmt.limit == 2 and stmt.order[0].descending
    assert stmt.where.items[0].left.steps[1].name == "limit"


@pytest.mark.parametrize("text, hint", [
    ('select m where m.name = "a"', r"to compare use `==`"),
    ('construct m2 from m1 mutate m1["a"].insert == RELU("r")', r"write `=` instead of `==`"),
    ('select m m.name == "a"', r"missing `where`"),
    ('select m where m.name == "a', r"unclosed string"),
    ('selct m where m.seq > 1', r"did you mean the keyword `select`"),
    ('select m where m.seq > 1 ordr by m.seq', r"did you mean `order`"),
    ('select m where (m.seq > 1', r"a `\(` is not closed"),
])
def test_syntax_errors_have_position_caret_and_hint(text: str, hint: str) -> None:
    with pytest.raises(DQLSyntaxError, match=hint) as info:
        parse(text)
    msg = str(info.value)
    assert msg.startswith(f"syntax error at line {info.value.line}, column {info.value.column}")
    caret_line = msg.splitlines()[2]
    assert caret_line.index("^") == info.value.column + 1   # two spaces of indent, 1-based column


def test_huge_literal_is_a_syntax_error() -> None:
    with pytest.raises(DQLSyntaxError, match="cannot read the query"):
        parse("select m limit " + "9" * 5000)


def test_empty_query_says_what_to_write() -> None:
    with pytest.raises(DQLSyntaxError, match="empty query: write e.g."):
        parse("  \n ")


def test_tokenize_covers_text_exactly() -> None:
    text = 'select m where m["conv*"].next has POOL("MAX") -- note\n and m.seq >= 2;'
    toks = tokenize(text)
    assert "".join(t for _, t in toks) == text
    kinds = {t: k for k, t in toks}
    assert kinds["select"] == "keyword" and kinds["POOL"] == "template" and kinds['"MAX"'] == "string"
    assert kinds["next"] == "property"


WORDS = st.sampled_from(KEYWORD_WORDS + ["m", "m1", "m2", ".", ",", "(", ")", "[", "]", "==", "=", "<", ">=",
                                         '"conv*"', '"a%"', "'x'", "3", "-1.5e3", "has", "POOL", "RELU", "name",
                                         "hparams", "metrics", "next", ";", "->", "$1", '"', "!", "count", "max",
                                         "+", "-", "*", "/", "avg", "parent", "root", "ancestors", "depth",
                                         '"vgg@2"', '"a.*"'])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(WORDS, max_size=25))
def test_fuzz_token_soup_raises_only_dql_errors(words) -> None:
    try:
        parse(" ".join(words))
    except DQLSyntaxError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_fuzz_any_text_raises_only_dql_errors(text) -> None:
    try:
        parse(text)
    except DQLSyntaxError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(MODELHUB), st.integers(min_value=0, max_value=400), st.integers(0, 3))
def test_fuzz_mutated_modelhub_queries(base, pos, op) -> None:
    pos = pos % (len(base) + 1)
    text = [base[:pos] + base[pos + 1:], base[:pos] + '"' + base[pos:], base[:pos] + "=" + base[pos:],
            base[:pos] + ")" + base[pos:]][op]
    try:
        parse(text)
    except DQLSyntaxError as exc:
        assert exc.line >= 1 and "^" in str(exc)


# ---- the language beyond the paper (issue 19) ---------------------------------------------
def _eval(node, env: dict) -> float:
    """The value of a parsed arithmetic operand, paths looked up in ``env`` by their text."""
    if isinstance(node, A.Arith):
        a, b = _eval(node.left, env), _eval(node.right, env)
        return {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[node.op]
    if isinstance(node, A.Literal):
        return node.value
    return env[node.text()]


TERMS = st.sampled_from(['m.metrics["acc"]', "m.seq", 'm.parent.metrics["acc"]', "m.hparams.lr", "2", "3.5", "7"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["+", "-", "*", "/"]), TERMS), max_size=8), TERMS,
       st.booleans())
def test_arithmetic_parses_with_the_usual_precedence_and_left_associativity(rest, first, parens) -> None:
    expr = first + "".join(f" {op} {t}" for op, t in rest)
    if parens and rest:
        expr = f"({expr})"
    stmt = parse(f"select m where {expr} > 0")
    env = {'m.metrics["acc"]': 0.75, "m.seq": 4, 'm.parent.metrics["acc"]': 0.5, "m.hparams.lr": 0.125}
    python = expr
    for k, v in env.items():
        python = python.replace(k, repr(v))
    assert _eval(stmt.where.left, env) == pytest.approx(eval(python))    # noqa: S307 - our own digits


@pytest.mark.parametrize("text, kind", [
    ('select m where m descendant of "alexnet@1"', A.Lineage),
    ('select m where m not ancestor of "abc123"', A.Lineage),
    ('select m where m.name matches "alex.*"', A.Matches),
    ('select m where m.name not matches "alex.*"', A.Matches),
    ('select m where m.seq not between 2 and 5', A.Between),
    ('select m where m.hparams.lr > m.hparams.base_lr', A.Comparison),
])
def test_new_conditions_parse(text, kind) -> None:
    assert isinstance(parse(text).where, kind)


def test_group_by_and_keep_per_dataset_parse() -> None:
    stmt = parse('select m.name, count(m) group by m.name, m.author order by count(m) desc')
    assert [g.text() for g in stmt.group] == ["m.name", "m.author"]
    ev = parse('evaluate m from "q" vary config.lr in [0.1] keep top(5, m["loss"], 100) per dataset')
    assert ev.keep.per == "dataset"
    assert parse('evaluate m from "q" keep top(5, m["loss"], 100)').keep.per is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["+", "-", "*", "/"]), TERMS), min_size=1, max_size=6), TERMS,
       st.booleans(), st.none() | st.sampled_from(["gain", "x"]))
def test_arithmetic_in_a_select_list_parses_as_in_a_condition(rest, first, parens, alias) -> None:
    expr = first + "".join(f" {op} {t}" for op, t in rest)
    if parens:
        expr = f"({expr})"
    stmt = parse(f"select m.name, {expr}{f' as {alias}' if alias else ''} where m.seq > 0")
    item = stmt.items[1]
    assert item.alias == alias
    assert A.dump(item.value).split("@")[0] == A.dump(parse(f"select m where {expr} > 0").where.left).split("@")[0]
    assert isinstance(item.value, A.Arith)


def test_having_parses_after_group_by_and_before_order_by() -> None:
    stmt = parse('select m.name, count(m) as n group by m.name having count(m) > 2 and avg(m.metrics["acc"]) > 0.5 '
                 'order by n desc limit 3')
    assert isinstance(stmt.having, A.And) and stmt.limit == 3 and stmt.order[0].descending
    assert parse("select count(m) having count(m) > 1").having is not None
    assert parse("select m.name group by m.name").having is None
    with pytest.raises(DQLSyntaxError, match="syntax error"):
        parse("select m.name, count(m) having count(m) > 1 group by m.name")


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(["a", "b", "x1", "parent_v"]), st.sampled_from(["c", "child", "y"]),
       st.booleans())
def test_a_second_model_variable_parses_after_the_source(first, second, subquery) -> None:
    source = f"(select m where m.seq > 1) as {first}" if subquery else first
    stmt = parse(f"select {first}.name, {second}.name from {source}, {second} where {second}.parent == {first}.id")
    assert stmt.join == second
    assert (stmt.source.alias if subquery else stmt.source.var) == first
    assert parse(f"select {first} from {source}").join is None
