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
