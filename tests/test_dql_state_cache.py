"""What DQL keeps per catalog state (parsed text, vocabulary, bound plans, metric values and
structural predicates joined by row id) never answers from a state other than the one read."""
from __future__ import annotations

import pytest

from dqlref.synthetic import generate
from modelhub.catalog.generation import catalog_generation
from modelhub.catalog.selection_cache import clear_derived_relations
from modelhub.dql import BindError, execute
from test_dql_reference import QUERIES

CACHED_QUERY = 'select m.id, m.metrics["acc"] as acc where m.metrics["acc"] > {t} and m["conv*"].next has POOL("MAX")'


@pytest.fixture()
def cat(tmp_path):
    return generate(tmp_path / "cat", 60, seed=11)


def generation(cat) -> str | None:
    with cat.read() as con:
        return catalog_generation(con)


def test_every_committed_write_names_a_new_state_and_a_read_keeps_it(cat) -> None:
    first = generation(cat)
    execute('select m where m.metrics["acc"] > 0.5', cat)
    assert generation(cat) == first is not None
    with cat.write() as con:
        con.execute("UPDATE metrics SET value = value WHERE false")
    assert generation(cat) not in (first, None)


@pytest.mark.parametrize("query", QUERIES)
def test_kept_relations_give_the_rows_of_the_inline_sql(gen_catalog, query) -> None:
    clear_derived_relations()
    cold = execute(query, gen_catalog).rows
    warm = execute(query, gen_catalog).rows         # from the relations kept for this state
    with gen_catalog.write():                      # a writer's own transaction: computed inline
        inline = execute(query, gen_catalog).rows
    assert cold == warm == inline


def test_other_thresholds_reuse_the_kept_values_and_agree_with_inline_sql(cat) -> None:
    texts = [CACHED_QUERY.format(t=t) for t in (0.5, 0.7, 0.9, 0.0)]
    with cat.write():       # a writer's transaction computes everything inline (and commits a new state)
        inline = [execute(text, cat).rows for text in texts]
    state = generation(cat)
    assert [execute(text, cat).rows for text in texts] == inline     # the first inline, then kept
    assert [execute(text, cat).rows for text in texts] == inline
    assert generation(cat) == state and any(inline)


def test_a_commit_is_seen_by_the_next_statement(cat) -> None:
    text = CACHED_QUERY.format(t=0.5)
    before = execute(text, cat).rows
    assert before
    with cat.write() as con:
        con.execute("UPDATE metrics SET value = 0.0 WHERE name = 'acc'")
    assert execute(text, cat).rows == ()


def test_a_writers_own_uncommitted_rows_are_seen_inside_its_transaction(cat) -> None:
    text = CACHED_QUERY.format(t=0.5)
    assert execute(text, cat).rows     # values kept for the committed state
    with pytest.raises(RuntimeError, match="roll back"):
        with cat.write() as con:
            con.execute("UPDATE metrics SET value = 0.0 WHERE name = 'acc'")
            assert execute(text, cat).rows == ()
            raise RuntimeError("roll back")
    assert execute(text, cat).rows


def test_a_new_metric_name_binds_after_its_commit(cat) -> None:
    with pytest.raises(BindError, match='unknown metric "fresh"'):
        execute('select m where m.metrics["fresh"] > 0', cat)
    with cat.write() as con:
        (vid,), = con.execute("SELECT id FROM versions ORDER BY id LIMIT 1").fetchall()
        con.execute("INSERT INTO metrics VALUES (?, 'fresh', 1, 0.5)", [vid])
    assert execute('select m.id where m.metrics["fresh"] > 0', cat).rows == ((vid,),)
