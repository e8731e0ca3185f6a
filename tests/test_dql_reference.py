"""The DuckDB executor and the pure-Python reference evaluator agree, row for row."""
from __future__ import annotations

import pytest

from modelhub.dql import execute, plan_text
from dqlref.reference import ReferenceCatalog, run_select

QUERIES = [
    'select m1 where m1.name like "alexnet_%" and m1.creation_time > "2015-11-22" '
    'and m1["conv[1,3,5]"].next has POOL("MAX")',
    'select m where m.metrics["acc"] between 0.8 and 0.9',
    'select m.name, max(m.metrics["val_acc"]) as best, min(m.metrics["loss"]) where max(m.metrics["acc"]) > 0.85 '
    'order by best desc limit 7',
    'select m where m.hparams.lr >= 0.01 or m["fc*"] has FC(out_features=10)',
    'select m where not m["conv*"].next has RELU',
    'select m.name, m.hparams.optimizer, m.hparams.momentum where m.hparams.optimizer in ["sgd", "adam"] '
    'and m.hparams.momentum != 0.9 order by m.hparams.momentum desc, m.creation_time',
    'select m where m.hparams.pretrained == true and m.author != "bob"',
    'select m where m.hparams.momentum == null and m.seq not between 2 and 5',
    'select m.name, count(m["conv*"]) as convs, m.n_layers where count(m["conv*"]) >= 8 order by convs desc, m.n_params',
    'select m where m.parent == null or m.name not like "vgg%"',
    'select m from (select m where m.hparams.batch_size in [64, 128] order by m.creation_time desc limit 40) '
    'where m["pool*"].prev has CONV(kernel_size=3) order by m.n_params limit 15',
    'select m where m["conv*"].next.next has POOL("AVG") and m.creation_time <= "2016-06-01 12:00:00"',
    'select m.name, m.metrics["acc"] where m.metrics["acc"] > m.metrics["val_acc"] order by m.metrics["acc"]',
    'select m.name, m.hparams.lr order by m.hparams.lr desc limit 25',
    'select m where m["softmax"].prev.prev has DROPOUT or m["flatten"] has Flatten',
    'select m where m.n_layers > 30 and not (m.hparams.epochs < 10 or m.id == "0")',
]


@pytest.fixture(scope="module")
def reference(gen_catalog):
    with gen_catalog.read() as con:
        return ReferenceCatalog(con)


@pytest.mark.parametrize("query", QUERIES)
def test_executor_matches_reference(query, gen_catalog, reference) -> None:
    got = execute(query, gen_catalog)
    plan = plan_text(query, gen_catalog)
    expected = run_select(reference, plan)
    assert [tuple(r) for r in got.rows] == expected
    assert got.columns == tuple(c.name for c in plan.columns)


def test_queries_are_selective(gen_catalog) -> None:
    """Guard against a vacuous comparison: most queries must return some rows but not all."""
    with gen_catalog.read() as con:
        total = con.execute("SELECT count(*) FROM versions").fetchone()[0]
    sizes = [len(execute(q, gen_catalog).rows) for q in QUERIES]
    assert sum(1 for s in sizes if 0 < s < total) >= len(QUERIES) - 3, sizes


def test_modelhub_select_finds_conv_then_maxpool(gen_catalog, reference) -> None:
    rows = execute(QUERIES[0], gen_catalog).to_dicts()
    assert rows and all(r["name"].startswith("alexnet") for r in rows)
    with gen_catalog.read() as con:
        for r in rows[:5]:
            gh = con.execute("SELECT graph_hash FROM versions WHERE id = ?", [r["id"]]).fetchone()[0]
            g = reference.graphs[gh]
            nexts = [g.node(s).op for c in ("conv1", "conv3", "conv5") if c in g.index() for s in g.successors(c)]
            assert "MaxPool2d" in nexts


# lineage, aggregates over versions, regular expressions, arithmetic, two hyperparameters, the parent join
EXTENDED = [
    'select m.name, m.seq, m.depth, m.root where m.depth >= 2 order by m.depth desc, m.name limit 40',
    'select m.name, m.root.name, m.root.seq where m.root.name != m.name',
    'select m.name, m.seq, m.ancestors where count(m["conv*"]) > 6 and m.depth between 1 and 3',
    'select m where m descendant of "lenet-3@12"',
    'select m where m descendant of "vgg-4@9" or m ancestor of "deepnet-20"',
    'select m where m not descendant of "alexnet_2@1" and m.name matches "alexnet_.*"',
    'select m.name, m.metrics["acc"], m.parent.metrics["acc"] '
    'where m.metrics["acc"] - m.parent.metrics["acc"] > 0.2 order by m.metrics["acc"] desc',
    'select m where m.metrics["loss"] * 2 + 0.1 < m.parent.metrics["loss"] / 1.5',
    'select m.name, m.parent.name, m.parent.hparams.lr where m.parent.hparams.lr > m.hparams.lr',
    'select m.name, m.hparams.lr, m.hparams.weight_decay where m.hparams.lr > m.hparams.weight_decay * 100',
    'select m where m.hparams.optimizer == m.parent.hparams.optimizer and m.parent.name != m.name',
    'select m where m.name matches "alexnet[-_](origin|avgv1)?.*[0-9]" and not m.author matches "b.*"',
    'select m where m.hparams.optimizer matches "(sgd|adam)" and m.n_layers - count(m["conv*"]) > 20',
    'select m.name, count(m), avg(m.metrics["acc"]), max(m.metrics["acc"]), min(m.hparams.lr), sum(m.n_params) '
    'group by m.name order by count(m) desc limit 15',
    'select m.hparams.optimizer, m.author, count(m) as n, avg(m.depth) where m.seq > 2 '
    'group by m.hparams.optimizer, m.author order by n desc',
    'select count(m), min(m.creation_time), max(m.metrics["loss"]), avg(m.parent.metrics["loss"])',
    'select m.root, count(m) as family group by m.root order by family desc, m.root limit 10',
    # arithmetic in select lists, `having`
    'select m.name, m.seq, m.metrics["acc"] - m.parent.metrics["acc"] as gain where m.parent != null '
    'order by gain desc, m.name, m.seq limit 30',
    'select m.name, (m.metrics["acc"] - 0.5) * 100, m.hparams.lr * 10, m.n_params / 1000 as kparams '
    'where m.metrics["acc"] > 0.6 order by kparams desc',
    'select m.name, count(m) as n, avg(m.metrics["acc"]) as acc group by m.name '
    'having count(m) >= 3 and avg(m.metrics["acc"]) > 0.5 order by n desc, m.name',
    'select m.name, max(m.metrics["acc"]) - min(m.metrics["acc"]) as spread group by m.name '
    'having spread > 0.2 or m.name like "lenet%" order by spread desc',
    'select m.hparams.optimizer, count(m) group by m.hparams.optimizer having not count(m) between 10 and 20',
    'select count(m), avg(m.depth) * 2 as d2 where m.seq > 1 having count(m) > 5',
]

# joins of two model variables (`from a, b`), over a small catalog (the reference walks every pair)
JOINS = [
    'select a.name, a.seq, b.seq as child, b.metrics["acc"] - a.metrics["acc"] as gain from a, b '
    'where b.parent == a.id and b.metrics["acc"] > a.metrics["acc"] order by gain desc limit 20',
    'select a, b from a, b where a.name == b.name and a.seq + 1 == b.seq and b.hparams.lr < a.hparams.lr',
    'select a.name, b.name, b.hparams.optimizer from a, b where b.parent == a.id and b.name != a.name '
    'order by b.hparams.optimizer desc, b.name',
    'select a.id, b.id from (select m where m["conv*"].next has POOL("MAX")) as a, b '
    'where a.name like "alexnet%" and b.n_params < a.n_params / 2 and b.creation_time > a.creation_time limit 30',
    'select a.name, b.name, b.parent from a, b where a.hparams.optimizer == b.hparams.optimizer '
    'and a.metrics["acc"] - b.metrics["acc"] > 0.5 and not b.name matches "vgg.*" limit 25',
]


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory):
    from dqlref.synthetic import generate
    return generate(tmp_path_factory.mktemp("joins"), 60, seed=3)


@pytest.mark.parametrize("query", JOINS)
def test_joins_match_reference(query, small_catalog) -> None:
    with small_catalog.read() as con:
        ref = ReferenceCatalog(con)
    got = execute(query, small_catalog)
    expected = run_select(ref, plan_text(query, small_catalog))
    assert got.rows and _same([tuple(r) for r in got.rows], expected), (got.rows[:5], expected[:5])


def _same(got: list[tuple], expected: list[tuple]) -> bool:
    """Rows equal; floats equal to 1e-9 (SQL sums in another order than Python)."""
    return len(got) == len(expected) and all(
        len(a) == len(b) and all(x == pytest.approx(y, rel=1e-9, abs=1e-12) if isinstance(x, float) else x == y
                                 for x, y in zip(a, b)) for a, b in zip(got, expected))


@pytest.mark.parametrize("query", EXTENDED)
def test_extended_language_matches_reference(query, gen_catalog, reference) -> None:
    got = execute(query, gen_catalog)
    expected = run_select(reference, plan_text(query, gen_catalog))
    assert _same([tuple(r) for r in got.rows], expected), (got.rows[:5], expected[:5])


def test_extended_queries_are_selective(gen_catalog) -> None:
    with gen_catalog.read() as con:
        total = con.execute("SELECT count(*) FROM versions").fetchone()[0]
    sizes = [len(execute(q, gen_catalog).rows) for q in EXTENDED]
    assert all(s > 0 for s in sizes), sizes
    assert sum(1 for s in sizes if s < total) >= len(EXTENDED) - 1, sizes
