"""DQL at its edges (issue 16, item 7): integer ranges, long and deep conditions, time zones,
LIKE escapes, long `in` lists, and a commit landing between vocabulary load and execution."""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from datetime import timedelta

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dqlref.reference import ReferenceCatalog, run_select
from dqlref.synthetic import generate
from modelhub.catalog.generation import bump_generation
from modelhub.cli.exitcodes import exit_code_for
from modelhub.dql import BindError, DQLSyntaxError, execute, parse, plan_text
from modelhub.dql import executor
from modelhub.dql import plan as P
from modelhub.dql.lowering import select_sql
from modelhub.dql.parser import MAX_NESTING

BIG = "99999999999999999999"
INT_RANGE = "from 0 to 9223372036854775807"


@pytest.fixture(scope="module")
def cat(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("limits"), 60, seed=5)


def rows(cat, text):
    return execute(text, cat).rows


# ---- 1. integer literals out of range -----------------------------------------------------
def test_limit_out_of_range_is_a_query_error_naming_the_range(cat) -> None:
    with pytest.raises(BindError, match=f"limit {BIG}: the limit must be an integer {INT_RANGE}") as info:
        execute(f"select m limit {BIG}", cat)
    assert exit_code_for(info.value) == 6 and "\n" not in str(info.value)
    assert len(rows(cat, "select m limit 9223372036854775807")) == 60


def test_keep_top_out_of_range_is_a_query_error(cat) -> None:
    with pytest.raises(BindError, match=r"keep top\(99999999999999999999, \.\.\.\): k must be an integer from 1"):
        plan_text(f'evaluate m from m vary config.lr in [0.1] keep top({BIG}, m["loss"], 1)', cat)
    with pytest.raises(BindError, match="the number of iterations must be an integer from 0 to 9223372036854775807"):
        plan_text(f'evaluate m from m vary config.lr in [0.1] keep top(1, m["loss"], {BIG})', cat)


def test_integer_property_compared_with_out_of_range_number_is_a_query_error(cat) -> None:
    for text in (f"select m where m.seq > {BIG}", f"select m where m.n_params in [1, -{BIG}]",
                 f"select m where m.seq between 1 and {BIG}", f'select m where count(m["conv*"]) < {BIG}'):
        with pytest.raises(BindError, match="is out of range for .*an integer from -9223372036854775808 to "
                                            "9223372036854775807") as info:
            execute(text, cat)
        assert exit_code_for(info.value) == 6


def test_float_valued_metric_compares_with_a_huge_integer_as_a_float(cat) -> None:
    assert rows(cat, f'select m where m.metrics["acc"] > {BIG}') == ()
    assert len(rows(cat, f'select m where m.metrics["acc"] < {BIG}')) == \
        len(rows(cat, 'select m where m.metrics["acc"] < 1e30'))
    with pytest.raises(BindError, match=r"100000\.\.\.\(401 digits\) is out of range .*numbers are doubles"):
        execute('select m where m.metrics["acc"] > 1' + "0" * 400, cat)


# ---- 2. long chains and deep nesting ------------------------------------------------------
def test_or_chain_of_three_thousand_terms_runs(cat) -> None:
    text = "select m where " + " or ".join(f"m.seq == {i}" for i in range(3000))
    assert rows(cat, text) == rows(cat, "select m where m.seq >= 0 and m.seq < 3000")


def test_and_chain_of_three_thousand_terms_runs(cat) -> None:
    text = "select m where " + " and ".join(f"m.seq != {i}" for i in range(3, 3003))
    assert rows(cat, text) == rows(cat, "select m where m.seq < 3")


def test_long_chain_sql_is_grouped_so_duckdb_never_nests_deeply(cat) -> None:
    plan = plan_text("select m where " + " or ".join(f"m.seq == {i}" for i in range(5000)), cat)
    sql = select_sql(plan).sql
    depth = deepest = 0
    for ch in sql:
        depth += ch == "("
        depth -= ch == ")"
        deepest = max(deepest, depth)
    assert deepest < 10


def test_not_nested_to_the_limit_runs_and_beyond_is_a_syntax_error_with_position(cat) -> None:
    ok = "select m where " + "not " * MAX_NESTING + "m.seq == 1"
    assert rows(cat, ok) == rows(cat, "select m where m.seq == 1")     # an even number of nots
    for n in (MAX_NESTING + 1, 500, 5000):
        with pytest.raises(DQLSyntaxError, match=r"query too deeply nested at line 1, column \d+: more than 200 "
                                                 r"levels(.|\n)*\^(.|\n)*hint") as info:
            execute("select m where " + "not " * n + "m.seq == 1", cat)
        assert info.value.line == 1 and info.value.column > 1


def test_parentheses_nested_deeply_are_a_syntax_error_not_a_recursion_error(cat) -> None:
    deep = "select m where " + "(m.seq == 1 or not " * 3000 + "m.seq == 2" + ")" * 3000
    with pytest.raises(DQLSyntaxError, match="query too deeply nested at line 1"):
        execute(deep, cat)
    # redundant parentheses around one predicate add no level
    assert rows(cat, "select m where " + "(" * 5000 + "m.seq == 2" + ")" * 5000) == \
        rows(cat, "select m where m.seq == 2")


def test_nested_subqueries_beyond_the_limit_are_a_syntax_error(cat) -> None:
    text = "select m from " + "(select m from " * 300 + "m" + ")" * 300
    with pytest.raises(DQLSyntaxError, match="query too deeply nested"):
        parse(text)


_atoms = st.sampled_from(["m.seq == 1", "m.name like \"a%\"", "m.hparams.lr > 0.01"])


@st.composite
def _nested(draw):
    depth = draw(st.integers(0, 700))
    kinds = draw(st.lists(st.sampled_from(["not ", "(x or ", "(x and ", "(not "]), min_size=depth,
                          max_size=depth))
    text, closing = "", ""
    for k in kinds:
        text += k.replace("x", draw(_atoms))
        closing += ")" if k.startswith("(") else ""
    return "select m where " + text + draw(_atoms) + closing


@settings(max_examples=40, deadline=None, derandomize=True)
@given(_nested())
def test_no_nesting_raises_anything_but_a_query_error(text) -> None:
    try:
        parse(text)
    except DQLSyntaxError as exc:
        assert "too deeply nested" in str(exc)


# ---- 3. time zones ------------------------------------------------------------------------
def test_time_literal_with_offset_is_converted_to_utc(cat) -> None:
    (vid, created), = execute("select m.id, m.creation_time where m.name == \"alexnet_2\" and m.seq == 1", cat).rows
    local = (created + timedelta(hours=2)).isoformat() + "+02:00"      # the same instant at UTC+2
    assert rows(cat, f'select m.id where m.creation_time == "{local}"') == ((vid,),)
    assert rows(cat, f'select m.id where m.creation_time == "{created.isoformat()}Z"') == ((vid,),)
    plan = plan_text('select m where m.creation_time > "2026-01-01T10:00:00+02:00"', cat)
    assert isinstance(plan.filter, P.Compare) and plan.filter.right.value == "2026-01-01 08:00:00"
    assert plan_text('select m where m.creation_time > "2026-01-01T10:00:00"', cat).filter.right.value \
        == "2026-01-01T10:00:00"


# ---- 4. LIKE escapes ----------------------------------------------------------------------
def test_like_backslash_escapes_underscore_and_percent(cat) -> None:
    names = {r[0] for r in rows(cat, "select m.name")}
    wildcard = {r[0] for r in rows(cat, 'select m.name where m.name like "alexnet_%"')}
    literal = {r[0] for r in rows(cat, 'select m.name where m.name like "alexnet\\\\_%"')}
    assert literal == {n for n in names if n.startswith("alexnet_")} and literal
    assert wildcard > literal           # `_` alone still matches the `-` of alexnet-avgv1
    assert {r[0] for r in rows(cat, 'select m.name where m.name like "alexnet\\_%"')} == literal
    assert rows(cat, 'select m where m.name like "%\\\\%%"') == ()      # no name holds a %
    query = select_sql(plan_text('select m where m.name like "a\\\\_b"', cat))
    assert "LIKE $p0 ESCAPE '\\'" in query.sql and query.params == {"p0": "a\\_b"}


def test_like_reference_evaluator_agrees_on_escapes(cat) -> None:
    with cat.read() as con:
        ref = ReferenceCatalog(con)
    for pat in ('"alexnet\\\\_%"', '"alexnet_%"', '"%\\\\%%"', '"%-%"'):
        text = f"select m where m.name like {pat}"
        assert run_select(ref, plan_text(text, cat)) == list(rows(cat, text))


def test_like_pattern_ending_in_a_lone_backslash_is_a_bind_error(cat) -> None:
    with pytest.raises(BindError, match="ends with a lone backslash"):
        execute('select m where m.name like "abc\\\\"', cat)


# ---- 5. long `in` lists -------------------------------------------------------------------
def test_in_list_of_twenty_thousand_values_is_one_bound_parameter(cat) -> None:
    values = list(range(20000))
    plan = plan_text("select m where m.seq in [" + ", ".join(map(str, values)) + "]", cat)
    query = select_sql(plan)
    assert list(query.params.values()) == [values]
    assert "(v.seq IN (SELECT unnest($p0)))" in query.sql and "19999" not in query.sql
    assert rows(cat, "select m where m.seq in [" + ", ".join(map(str, values)) + "]") == rows(cat, "select m")


@pytest.mark.parametrize("cond", [
    'm.name in ["alexnet_2", "deepnet-3"]', 'm.name not in ["alexnet_2", "deepnet-3"]',
    "m.hparams.lr in [0.1, 0.01]", "m.hparams.momentum not in [null]", 'm.hparams.optimizer in ["sgd", "adam"]',
    "m.hparams.pretrained in [true]", "m.seq in [1, 2.0]", 'm.metrics["acc"] not in [0.5, 1]',
])
def test_in_list_matches_the_reference_evaluator(cat, cond) -> None:
    with cat.read() as con:
        ref = ReferenceCatalog(con)
    text = f"select m where {cond}"
    assert run_select(ref, plan_text(text, cat)) == list(rows(cat, text))


def test_in_list_on_ids_matches_prefixes(cat) -> None:
    ids = [r[0] for r in rows(cat, "select m.id where m.seq == 1")]
    got = rows(cat, "select m.id where m.id in [" + ", ".join(f'"{i[:10]}"' for i in ids) + "]")
    assert sorted(r[0] for r in got) == sorted(ids)


# ---- 6. a commit between vocabulary load and execution -------------------------------------
class _FileCatalog:
    """A catalog whose scopes are cursors of one connection, so a second cursor can commit
    while a query is between loading its vocabulary and running."""

    def __init__(self, path) -> None:
        self.con = duckdb.connect(str(path))

    @contextmanager
    def read(self):
        cur = self.con.cursor()
        try:
            yield cur
        finally:
            cur.close()


def test_metric_committed_after_vocabulary_load_does_not_fail_the_query(cat, tmp_path, monkeypatch) -> None:
    shutil.copy(cat.db_path, tmp_path / "copy.duckdb")
    fake = _FileCatalog(tmp_path / "copy.duckdb")
    (vid,), = fake.con.execute("SELECT id FROM versions ORDER BY id LIMIT 1").fetchall()
    calls = []

    def commit_in_flight(con) -> None:
        calls.append(1)
        if len(calls) == 1:     # the first commit carrying the metric lands now
            writer = fake.con.cursor()      # as a writer's commit does, it names a new catalog state
            writer.execute("INSERT INTO metrics VALUES (?, 'fresh_metric', 1, 0.5)", [vid])
            bump_generation(writer)

    monkeypatch.setattr(executor, "_vocabulary_loaded", commit_in_flight)
    res = execute('select m.id, m.metrics["fresh_metric"] as v where m.metrics["fresh_metric"] > 0', fake)
    assert res.rows == ((vid, 0.5),) and calls == [1]
    fake.con.close()


def test_vocabulary_and_rows_come_from_one_snapshot(cat, tmp_path, monkeypatch) -> None:
    shutil.copy(cat.db_path, tmp_path / "copy.duckdb")
    fake = _FileCatalog(tmp_path / "copy.duckdb")
    before = fake.con.execute("SELECT count(*) FROM metrics WHERE name = 'acc' AND value > 0.6").fetchone()[0]

    def commit_in_flight(con) -> None:     # rows committed after the vocabulary was read stay unseen
        writer = fake.con.cursor()
        writer.execute("UPDATE metrics SET value = 0.99 WHERE name = 'acc'")
        bump_generation(writer)

    monkeypatch.setattr(executor, "_vocabulary_loaded", commit_in_flight)
    res = execute('select m.id where max(m.metrics["acc"]) > 0.6', fake)
    expected = fake.con.execute("SELECT count(DISTINCT version_id) FROM metrics WHERE name = 'acc'").fetchone()[0]
    assert before and len(res.rows) < expected       # the query read the snapshot of its vocabulary
    fake.con.close()


def test_unknown_metric_still_fails_after_the_second_look(cat) -> None:
    with pytest.raises(BindError, match='unknown metric "acx"'):
        execute('select m where m.metrics["acx"] > 0', cat)
