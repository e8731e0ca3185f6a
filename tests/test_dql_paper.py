"""The four queries of the ModelHub paper, verbatim, end to end on a repository of AlexNet-style
models: select, slice, construct (saved, skipping the model it cannot change) and evaluate from
the saved construct, keeping the top candidates over all of them."""
from __future__ import annotations

import json
import uuid
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from modelhub.dql import ExecutionError

torch.set_num_threads(1)

QUERY1 = ('select m1 where m1.name like "alexnet_%" and m1.creation_time > "2015-11-22" '
          'and m1["conv[1,3,5]"].next has POOL("MAX")')
QUERY2 = ('slice m2 from m1 where m1.name like "alexnet-origin%" '
          'mutate m2.input = m1["conv1"] and m2.output = m1["fc7"]')
QUERY3 = ('construct m2 from m1 where m1.name like "alexnet-avgv1%" and m1["conv*($1)"].next has POOL("AVG") '
          'mutate m1["conv*($1)"].insert = RELU("relu$1")')
QUERY4 = ('evaluate m from "query3" with config = "path to config" '
          'vary config.base_lr in [0.1, 0.01, 0.001] and config.net["conv*"].lr auto '
          'and config.input_data in ["path1", "path2"] keep top(5, m["loss"], 100)')

CONFIG = 'iterations = 110\nbatch_size = 8\nseed = 0\n'


def alexnet(blocks: list[tuple[str, nn.Module]], seed: int) -> nn.Sequential:
    """An AlexNet-shaped network (five convs, three pools, fc6-fc8) on 3x16x16 inputs."""
    torch.manual_seed(seed)
    head = [("flat", nn.Flatten()), ("fc6", nn.Linear(24, 16)), ("relu6", nn.ReLU()), ("drop6", nn.Dropout(0.0)),
            ("fc7", nn.Linear(16, 16)), ("relu7", nn.ReLU()), ("drop7", nn.Dropout(0.0)), ("fc8", nn.Linear(16, 3))]
    return nn.Sequential(OrderedDict(blocks + head))


def convs() -> dict[str, nn.Conv2d]:
    return {"conv1": nn.Conv2d(3, 4, 3, padding=1), "conv2": nn.Conv2d(4, 6, 3, padding=1),
            "conv3": nn.Conv2d(6, 8, 3, padding=1), "conv4": nn.Conv2d(8, 8, 3, padding=1),
            "conv5": nn.Conv2d(8, 6, 3, padding=1)}


def origin(seed: int) -> nn.Sequential:         # conv -> relu -> pool, as in AlexNet
    c = convs()
    return alexnet([("conv1", c["conv1"]), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
                    ("conv2", c["conv2"]), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
                    ("conv3", c["conv3"]), ("relu3", nn.ReLU()), ("conv4", c["conv4"]), ("relu4", nn.ReLU()),
                    ("conv5", c["conv5"]), ("relu5", nn.ReLU()), ("pool5", nn.MaxPool2d(2))], seed)


def pool_first(seed: int, pool=nn.MaxPool2d, relu_after_pool1: bool = True) -> nn.Sequential:
    """conv -> pool directly (the variants query 1 looks for; with average pools, query 3's)."""
    c = convs()
    blocks = [("conv1", c["conv1"]), ("pool1", pool(2))]
    if relu_after_pool1:
        blocks.append(("relu1", nn.ReLU()))
    blocks += [("conv2", c["conv2"]), ("pool2", pool(2)), ("conv3", c["conv3"]), ("relu3", nn.ReLU()),
               ("conv4", c["conv4"]), ("relu4", nn.ReLU()), ("conv5", c["conv5"]), ("pool5", pool(2))]
    return alexnet(blocks, seed)


def add_data(repo, tmp_path, name: str, seed: int, n: int = 48):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 3, 16, 16)).astype(np.float32) * 0.5 + y[:, None, None, None]
    np.savez(tmp_path / f"{name}.npz", x=x, y=y)
    return repo.data_add(name, [tmp_path / f"{name}.npz"])


@pytest.fixture()
def hub(repo, tmp_path, monkeypatch):
    # the validation split hashes the dataset's random id: fix it, so rankings are the same every run
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=7))
    monkeypatch.chdir(tmp_path)
    repo.commit(origin(0), name="alexnet-origin", message="the original")
    repo.commit(pool_first(1), name="alexnet_maxfirst", message="pool right after conv")
    repo.commit(pool_first(2, nn.AvgPool2d, relu_after_pool1=False), name="alexnet-avgv1", message="avg pools")
    # a relu1 after the first pool already: query 3 cannot add another relu1, this model is skipped
    repo.commit(pool_first(3, nn.AvgPool2d), name="alexnet-avgv1-relu", message="avg pools, relu after pool1")
    repo.commit(pool_first(4), name="vggish", message="not an alexnet")
    return repo


def test_query1_selects_the_variants_with_a_max_pool_right_after_conv1_3_or_5(hub) -> None:
    res = hub.query(QUERY1)
    assert [r[1] for r in res.rows] == ["alexnet_maxfirst"]


def test_query2_slices_conv1_to_fc7(hub) -> None:
    res = hub.query(QUERY2, commit=True)
    (d,) = res.graphs
    names = [n.name for n in d.graph.nodes]
    assert names[1] == "conv1" and "fc7" in names and "fc8" not in names
    assert hub.log("alexnet-origin-slice")[0].parents == (hub.log("alexnet-origin")[0].id,)


def test_query3_inserts_relus_only_after_average_pooled_convs_and_skips_what_it_cannot_change(hub) -> None:
    res = hub.query(QUERY3)
    (d,) = res.graphs
    assert d.source_name == "alexnet-avgv1"
    g = d.graph
    for k in (1, 2, 5):
        assert g.successors(f"conv{k}") == [f"relu{k}"] and g.node(f"relu{k}").op == "ReLU"
    assert g.successors("conv3") == ["relu3"] and g.successors("conv4") == ["relu4"]
    assert [src for src, _ in res.skipped] == ["alexnet-avgv1-relu@1"]
    assert 'a layer named "relu1" already exists' in res.skipped[0][1]
    assert "1 version(s) skipped" in res.text and "relu1" in res.text


def test_query3_all_or_nothing_fails_as_a_whole(hub) -> None:
    with pytest.raises(ExecutionError, match=r'alexnet-avgv1-relu@1: a layer named "relu1" already exists.*'
                                             r'all-or-nothing'):
        hub.query(QUERY3, all_or_nothing=True)


def test_mutation_is_restricted_to_the_layers_the_where_clause_matched_whatever_the_captures(hub) -> None:
    res = hub.query('construct m2 from m1 where m1.name == "alexnet-avgv1" and m1["conv*"].next has POOL("AVG") '
                    'mutate m1["conv*($1)"].insert = RELU("relu$1")')
    (d,) = res.graphs
    g = d.graph
    assert [g.successors(f"conv{k}") for k in range(1, 6)] == [["relu1"], ["relu2"], ["relu3"], ["relu4"], ["relu5"]]
    assert sum(n.op == "ReLU" for n in g.nodes) == 2 + 3 + 2     # relu3, relu4 kept; three inserted; relu6/7


def test_construct_from_a_nested_select_names_the_inner_variable(hub) -> None:
    res = hub.query('construct m2 from (select m where m.name == "alexnet-avgv1") '
                    'mutate m["conv3"].insert = DROPOUT("drop3")')
    (d,) = res.graphs
    assert d.graph.successors("conv3") == ["drop3"]


def test_query4_evaluates_the_saved_construct_and_keeps_the_top_5_over_all_candidates(hub, tmp_path) -> None:
    add_data(hub, tmp_path, "path1", 0)
    add_data(hub, tmp_path, "path2", 1)
    (tmp_path / "path to config").write_text(CONFIG)
    saved = hub.query(f"save query query3 as {QUERY3}")
    assert saved.kind == "save"
    assert hub.query('select m from "query3"').rows == ()    # nothing committed from it yet
    res = hub.query(QUERY4)
    assert len(res.rows) == 3 * 3 * 2
    status = [dict(zip(res.columns, r))["status"] for r in res.rows]
    assert status.count("finished") == 5 and len(res.committed) == 5
    # the construct's network was committed once, as the parent of every trained candidate
    (built,) = hub.query('select m from "query3"').rows
    assert built[1] == "alexnet-avgv1-construct"
    for vid in res.committed:
        assert hub.version(vid).parents == (built[0],)
    # the five kept are the best by validation loss at iteration 100, over both datasets
    rows = [dict(zip(res.columns, r)) for r in res.rows]
    kept_ids = iter(res.committed)
    at_keep = {True: [], False: []}
    with hub.catalog.read() as con:
        for row in rows:
            if row["status"] == "finished":
                (value,) = con.execute("SELECT arg_max(value, step) FROM metrics WHERE version_id = ? AND "
                                       "name = 'val_loss' AND step <= 100", [next(kept_ids)]).fetchone()
                at_keep[True].append(value)
            else:
                at_keep[False].append(row["val_loss"])     # a pruned candidate stopped at the keep point
    assert max(at_keep[True]) <= min(at_keep[False])
    # the construct was committed once; the five kept candidates are its children
    assert len(hub.log("alexnet-avgv1-construct")) == 1 + 5


def test_keep_top_per_dataset_keeps_k_of_each(hub, tmp_path) -> None:
    add_data(hub, tmp_path, "path1", 0)
    add_data(hub, tmp_path, "path2", 1)
    (tmp_path / "path to config").write_text(CONFIG.replace("110", "30"))
    hub.query(f"save query query3 as {QUERY3}")
    res = hub.query('evaluate m from "query3" with config = "path to config" '
                    'vary config.base_lr in [0.1, 0.01, 0.001] and config.input_data in ["path1", "path2"] '
                    'keep top(1, m["loss"], 20) per dataset')
    rows = [dict(zip(res.columns, r)) for r in res.rows]
    kept = [r["overrides"].split("input_data=")[1] for r in rows if r["status"] == "finished"]
    assert sorted(kept) == ["'path1'", "'path2'"]


def test_cli_lists_skipped_versions_and_takes_all_or_nothing(hub, cli) -> None:
    root = str(hub.paths.root)
    code, out, err = cli("query", "--repo", root, "--json", QUERY3)
    assert code == 0, err
    payload = json.loads(out)
    assert [s["source"] for s in payload["skipped"]] == ["alexnet-avgv1-relu@1"]
    code, out, err = cli("query", "--repo", root, "--all-or-nothing", QUERY3)
    assert code != 0 and "all-or-nothing" in err
