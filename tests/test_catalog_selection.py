"""The catalog's selection terms on their own (no DQL): what DQL's planner maps its plans onto."""
from __future__ import annotations

from datetime import datetime

import pytest

from dqlref.synthetic import generate
from modelhub.catalog import selection_terms as T
from modelhub.catalog.saved_queries import save_query, saved_queries
from modelhub.catalog.selection import select_ids, select_rows, version_hparam
from modelhub.catalog.selection_sql import rows_sql
from modelhub.dql import execute


@pytest.fixture(scope="module")
def cat(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("selection"), 40, seed=11)


def test_a_hand_built_selection_returns_what_the_same_dql_query_returns(cat) -> None:
    sel = T.Selection(
        columns=(T.VersionField("id"), T.HParamValue("lr"), T.MetricValue("acc", T.Aggregate.MAX)),
        where=T.AllOf((T.ComparisonTerm(T.VersionField("seq"), T.Comparator.GE, T.LiteralTerm(2)),
                       T.NotTerm(T.InListTerm(T.HParamValue("optimizer"), ("adam",))))),
        order=(T.SortTerm(T.MetricValue("acc", T.Aggregate.MAX), descending=True),), limit=5)
    with cat.read() as con:
        rows = select_rows(con, sel)
    expected = execute('select m.id, m.hparams.lr, max(m.metrics["acc"]) where m.seq >= 2 and '
                       'not m.hparams.optimizer in ["adam"] order by max(m.metrics["acc"]) desc limit 5', cat).rows
    assert tuple(rows) == expected and len(rows) == 5


def test_user_values_travel_as_parameters_never_as_sql_text(cat) -> None:
    query = rows_sql(T.Selection(columns=(T.VersionField("name"),),
                                 where=T.LikeTerm(T.VersionField("name"), "x'; DROP TABLE versions; --")))
    assert "DROP" not in query.sql and query.params == {"p0": "x'; DROP TABLE versions; --"}


def test_a_graph_match_not_evaluated_yet_renders_a_placeholder_naming_the_predicate() -> None:
    query = rows_sql(T.Selection(columns=(T.VersionField("id"),), where=T.GraphMatch(3)))
    assert "list_contains($p0, v.graph_hash)" in query.sql and query.params == {"p0": "<graphs satisfying #3>"}


def test_within_nests_a_selection_and_ids_come_in_model_seq_order(cat) -> None:
    inner = T.Selection(where=T.ComparisonTerm(T.VersionField("seq"), T.Comparator.LE, T.LiteralTerm(2)))
    outer = T.Selection(within=inner, where=T.ComparisonTerm(T.VersionField("seq"), T.Comparator.EQ, T.LiteralTerm(2)))
    with cat.read() as con:
        ids = select_ids(con, outer)
        seqs = [(r.model, r.seq) for r in version_hparam(con, ids, "lr")]
    assert ids and all(seq == 2 for _, seq in seqs) and seqs == sorted(seqs)


def test_saved_queries_round_trip(cat) -> None:
    with cat.write() as con:
        save_query(con, "recent", "select m where m.seq > 3", datetime(2026, 1, 1))
    with cat.read() as con:
        assert saved_queries(con)["recent"] == "select m where m.seq > 3"
