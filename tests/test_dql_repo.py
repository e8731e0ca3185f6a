"""repo.query and `dlv query`: results, commits of slice/construct with lineage and carried weights."""
from __future__ import annotations

import json

import torch

from helpers import tiny_cnn


def _commit_tiny(repo):
    model = tiny_cnn(0)
    v = repo.commit(model, name="tiny", message="base", hparams={"lr": 0.1}, metrics={"acc": [0.2, 0.6]})
    return model, v


def test_repo_query_select(repo) -> None:
    _, v = _commit_tiny(repo)
    res = repo.query('select m.name, m.hparams.lr, m.metrics["acc"], count(m["conv*"]) as convs')
    assert res.rows == (("tiny", 0.1, 0.6, 2),)
    assert res.to_dicts() == [{"name": "tiny", "hparams.lr": 0.1, "metrics[acc]": 0.6, "convs": 2}]


def test_slice_commit_carries_weights_and_lineage(repo) -> None:
    model, v = _commit_tiny(repo)
    res = repo.query('slice m2 from m1 where m1.name == "tiny" mutate m2.input = m1["conv2"] and m2.output = m1["fc2"]',
                     commit=True)
    (new_id,) = res.committed
    info = repo.version(new_id)
    assert info.parents == (v.id,) and info.model == "tiny-slice"
    ck = repo.checkout(new_id)
    assert set(ck.state_dict) == {"conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    for k, t in ck.state_dict.items():
        assert torch.equal(t, model.state_dict()[k])
    x = torch.randn(2, 4, 4, 4)
    expected = model.fc2(torch.relu(model.fc1(torch.flatten(model.pool2(torch.relu(model.conv2(x))), 1))))
    assert torch.allclose(ck.module(x), expected)


def test_construct_commit_inserts_layer_and_keeps_old_weights(repo) -> None:
    model, v = _commit_tiny(repo)
    res = repo.query('construct m2 from m1 where m1.name == "tiny" and m1["pool*($1)"].prev has RELU '
                     'mutate m1["pool*($1)"].insert = DROPOUT("drop$1")', commit=True, name="tiny-drop")
    ck = repo.checkout(res.committed[0])
    names = [n.name for n in ck.graph.nodes]
    assert names.index("drop1") == names.index("pool1") + 1 and "drop2" in names
    assert torch.equal(ck.state_dict["conv1.weight"], model.state_dict()["conv1.weight"])
    ck.module.eval()
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(ck.module(x), model(x))   # dropout is the identity in eval mode
    lineage = repo.query(f'select m.name where m.parent == "{v.id[:10]}"')
    assert lineage.rows == (("tiny-drop",),)


def test_cli_query_json_and_errors(cli) -> None:
    assert cli("init")[0] == 0
    import modelhub
    _commit_tiny(modelhub.open_repo(cli.work))
    code, out, err = cli("query", "--json", 'select m.name, m.hparams.lr')
    assert code == 0 and json.loads(out)["rows"] == [{"name": "tiny", "hparams.lr": 0.1}]   # objects, as every --json
    code, out, err = cli("query", 'select m where m.name = "tiny"')
    assert code != 0 and "to compare use `==`" in err and "^" in err
    code, out, err = cli("query", "--save", "fast", 'select m where m.hparams.lr >= 0.1')
    assert code == 0
    code, out, err = cli("query", 'select m.name from "fast"')
    assert code == 0 and "tiny" in out and "(1 row)" in out
