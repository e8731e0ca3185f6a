"""Executor behaviour on a small generated catalog: slice, construct, saved queries, evaluate, errors."""
from __future__ import annotations

import pytest

from dqlref.synthetic import generate
from modelhub.dql import BindError, ExecutionError, PlanError, execute
from modelhub.dql.plan import ConstructPlan
from modelhub.dql import plan_text


@pytest.fixture(scope="module")
def cat(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("exec"), 150, seed=3)


def test_modelhub_slice_cuts_conv1_to_fc7(cat) -> None:
    res = execute('slice m2 from m1 where m1.name like "alexnet-origin%" '
                  'mutate m2.input = m1["conv1"] and m2.output = m1["fc7"]', cat)
    assert res.kind == "slice" and res.graphs
    for d in res.graphs:
        g = d.graph
        names = [n.name for n in g.nodes]
        assert names[1] == "conv1" and g.nodes[-1].args == ({"node": "fc7"},)
        assert g.nodes[1].args == ({"node": names[0]},) and g.nodes[0].kind == "placeholder"
        assert "fc8" not in names and "softmax" not in names


def test_modelhub_construct_inserts_relu_after_conv_before_avgpool(cat) -> None:
    res = execute('construct m2 from m1 where m1.name like "alexnet-avgv1%" and m1["conv*($1)"].next has POOL("AVG") '
                  'mutate m1["conv*($1)"].insert = RELU("relu$1")', cat)
    assert res.graphs
    for d in res.graphs:
        g = d.graph
        for conv in ("conv1", "conv2", "conv5"):   # the pooled blocks of alexnet-avgv1 lack a relu
            (nxt,) = g.successors(conv)
            assert nxt == "relu" + conv[-1] and g.node(nxt).op == "ReLU"
            assert g.node(g.successors(nxt)[0]).op == "AvgPool2d"
        assert g.successors("conv3") == ["relu3"]   # untouched: conv3 is not followed by a pool


def test_construct_name_collision_is_an_execution_error(cat) -> None:
    with pytest.raises(ExecutionError, match='a layer named "relu3" already exists; choose another name'):
        execute('construct m2 from m1 where m1.name like "alexnet-avgv1%" '
                'mutate m1["conv*($1)"].insert = RELU("relu$1")', cat)


def test_delete_node_and_edge(cat) -> None:
    plan = plan_text('construct m2 from m1 where m1.name like "alexnet-origin%" mutate delete m1["drop*"]', cat)
    assert isinstance(plan, ConstructPlan)
    res = execute('construct m2 from m1 where m1.name like "alexnet-origin%" mutate delete m1["drop*"]', cat)
    for d in res.graphs:
        assert not any(n.op == "Dropout" for n in d.graph.nodes)
    with pytest.raises(ExecutionError, match="leaves relu1 without input; delete the layer instead"):
        execute('construct m2 from m1 where m1.name like "alexnet-origin%" '
                'mutate delete edge m1["conv1"] -> m1["relu1"]', cat)


def test_slice_needs_exactly_one_endpoint(cat) -> None:
    with pytest.raises(ExecutionError, match=r'the slice input "conv\*" must match exactly one layer'):
        execute('slice m2 from m1 where m1.name like "alexnet-origin%" '
                'mutate m2.input = m1["conv*"] and m2.output = m1["fc7"]', cat)
    with pytest.raises(ExecutionError, match="no path leads from fc7 to conv1"):
        execute('slice m2 from m1 where m1.name like "alexnet-origin%" '
                'mutate m2.input = m1["fc7"] and m2.output = m1["conv1"]', cat)


def test_saved_query_is_a_source_and_cycles_are_refused(tmp_path) -> None:
    cat = generate(tmp_path, 60, seed=5)
    res = execute('save query "good" as select m where max(m.metrics["acc"]) > 0.6', cat)
    assert res.kind == "save"
    direct = execute('select m where max(m.metrics["acc"]) > 0.6 and m.seq <= 3', cat).rows
    nested = execute('select m from "good" where m.seq <= 3', cat).rows
    # the direct select also shows the max(acc) it filters on; the versions are the same
    assert direct and [r[:4] for r in direct] == list(nested)
    execute('save query loop as select m from "good"', cat)
    execute('save query good as select m from "loop"', cat)     # now good -> loop -> good
    with pytest.raises(BindError, match='saved query "good" refers to itself'):
        execute('select m from "good"', cat)


def test_evaluate_explain_enumerates_candidates(cat) -> None:
    res = execute('explain evaluate m from (select m where m.name like "alexnet%" limit 2) '
                  'vary config.base_lr in [0.1, 0.01] and config.net["conv*"].lr auto keep top(3, m["loss"], 10)', cat)
    assert "candidates: 12 = 2 model(s) x 6 setting(s)" in res.text
    assert "vary config.net[\"conv*\"].lr in [0.0, 0.1, 1.0]  (auto: default grid)" in res.text


def test_evaluate_without_engine_or_repo_says_so(cat) -> None:
    with pytest.raises(ExecutionError, match="engine|needs a repository"):
        execute('evaluate m from m where m.name like "lenet%" vary config.base_lr auto', cat)


def test_auto_without_default_grid_is_a_plan_error(cat) -> None:
    with pytest.raises(PlanError, match=r"no default grid for 'optimizer'.*list the values"):
        execute('explain evaluate m from m vary config.optimizer auto', cat)


@pytest.mark.parametrize("query, message", [
    ('select m where m.metrics["acc"] > "high"', r'metrics\["acc"\] is a number; compare it with a number'),
    # comparing two hyperparameters, or one with a number, is allowed since issue 19; a time is not
    ('select m where m.hparams.lr > m.creation_time',
     r"a hyperparameter compares with numbers, text or another hyperparameter, not with m.creation_time"),
    ('select m where m.seq in []', r"the list after `in` is empty"),
    ('select m where m.seq in [1, "a"]', r"mixes types"),
    ('select m where m["conv1"].nxt has RELU', r"only .next and .prev follow edges, not nxt"),
    ('select m where m["conv1"] has POOL("MIN")', r'POOL takes "MAX" or "AVG"'),
    ('select m.name, m.name', r"duplicate result column 'name'"),
    # avg aggregates over versions since issue 19: only in a select list
    ('select m where avg(m.metrics["acc"]) > 1', r'avg\(...\) aggregates over versions: use it in the select list'),
    ('select m where mean(m.metrics["acc"]) > 1', r'unknown function mean: '),
    ('select m order by best', r"order by best: name a property"),
    ('select m where m.hparams.optimzer == "sgd"', r'unknown hyperparameter "optimzer".*did you mean "optimizer"'),
    ('construct m2 from m1 mutate m1["conv1"].insert = RELU', r'RELU needs the new layer\'s name'),
    ('slice m2 from m1 mutate m2.input = m1["conv1"]', r'slice needs m2.output'),
])
def test_bind_errors_explain_the_fix(cat, query, message) -> None:
    with pytest.raises(BindError, match=message):
        execute(query, cat)


def test_result_helpers(cat) -> None:
    res = execute('select m.name, m.hparams.lr as lr order by m.seq limit 3', cat)
    assert res.columns == ("name", "lr") and len(res) == 3
    assert res.to_dicts()[0].keys() == {"name", "lr"}
    assert '"columns": ["name", "lr"]' in res.to_json()
    table = res.format_table().splitlines()
    assert table[0].startswith("name") and table[-1] == "(3 rows)"
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ExecutionError, match="pip install pandas"):
            res.df()
    else:
        assert list(res.df().columns) == ["name", "lr"]


DEFAULT = ("id", "name", "seq", "creation_time")


def test_select_m_shows_what_it_filters_and_orders_on(cat) -> None:
    res = execute('select m where m.metrics["acc"] > 0.5 order by m.hparams.lr, m.seq limit 5', cat)
    assert res.columns == (*DEFAULT, "metrics[acc]", "hparams.lr")
    explicit = execute('select m.id, m.metrics["acc"], m.hparams.lr where m.metrics["acc"] > 0.5 '
                       'order by m.hparams.lr, m.seq limit 5', cat)
    assert [(r[0], r[4], r[5]) for r in res.rows] == list(explicit.rows) and len(res) == 5
    # each value once, under the name an explicit select gives it; what the defaults show adds nothing
    res = execute('select m where m.name like "a%" and m.metrics["acc"] > 0.1 and m.metrics["acc"] < 0.99 '
                  'and not m.hparams.optimizer in ["sgd"] order by m.creation_time desc, max(m.metrics["acc"])', cat)
    assert res.columns == (*DEFAULT, "metrics[acc]", "hparams.optimizer", "max(metrics[acc])")
    # arithmetic shows its operands, a related version's value its path; layer tests add nothing
    res = execute('select m where m.metrics["acc"] - m.parent.metrics["acc"] > 0 and m["conv*"] has CONV '
                  'and count(m["conv*"]) between 1 and m.n_layers', cat)
    assert res.columns == (*DEFAULT, "metrics[acc]", "parent.metrics[acc]", "count([conv*])", "n_layers")
    assert res.rows and all(r[4] - r[5] > 0 for r in res.rows)


def test_explicit_lists_and_sources_keep_their_columns(cat) -> None:
    assert execute('select m.name where m.metrics["acc"] > 0.5 order by m.hparams.lr', cat).columns == ("name",)
    assert execute('select m where m.seq > 0', cat).columns == DEFAULT
    # the outer select filters on nothing; the sub-query's filter picks versions, not columns
    assert execute('select m from (select m where m.metrics["acc"] > 0.5)', cat).columns == DEFAULT
    plan = execute('explain select m where m.hparams.lr > 0.01', cat).text
    assert plan.startswith("Select m [id, name, seq, creation_time, hparams.lr]")


def test_empty_catalog_binds_and_returns_nothing(tmp_path) -> None:
    from modelhub.catalog import Catalog
    cat = Catalog.create(tmp_path / "c.duckdb", tmp_path / "lock")
    assert execute('select m where m.hparams.lr > 0.1 and m["conv*"].next has RELU', cat).rows == ()
