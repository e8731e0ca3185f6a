"""The Python API: commit, checkout, log, desc, diff, copy, stats, lineage and dedup."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch

from helpers import TinyCNN, assert_bit_exact, bits, tiny_cnn
import modelhub
from modelhub.errors import InputError, RefError, RepoError, WeightsError


def test_commit_and_checkout_round_trip_bit_exact_for_every_dtype(repo) -> None:
    state = OrderedDict(
        w32=torch.randn(5, 7), w16=torch.randn(3).half(), wbf=torch.randn(4, 2).to(torch.bfloat16),
        i64=torch.arange(6), flags=torch.tensor([True, False]), scalar=torch.tensor(3.5),
        special=torch.tensor([float("nan"), float("inf"), -0.0, 1e-45, -float("inf")]),
    )
    v = repo.commit(state, name="mixed", message="all dtypes")
    ck = repo.checkout(v.id)
    assert_bit_exact(ck.state_dict, state)
    assert ck.module is None and ck.graph is None


def test_module_commit_captures_graph_and_checkout_rebuilds_it(repo) -> None:
    model = tiny_cnn().eval()
    repo.commit(model, name="lenet", message="init", hparams={"lr": 0.1, "opt": "sgd"})
    ck = repo.checkout("lenet")
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(bits(ck.module(x)), bits(model(x)))
    assert ck.hparams == {"lr": 0.1, "opt": "sgd"}
    # The user's class can be given instead (e.g. for untraceable models).
    ck2 = repo.checkout("lenet@1", model_class=TinyCNN)
    assert isinstance(ck2.module, TinyCNN)


def test_versions_lineage_and_references(repo) -> None:
    v1 = repo.commit(tiny_cnn(1), name="lenet", message="one")
    v2 = repo.commit(tiny_cnn(2), name="lenet", message="two", parent=v1.id)
    other = repo.commit(tiny_cnn(3), name="alt", message="alt")
    merged = repo.commit(tiny_cnn(4), name="lenet", message="merge", parent=[v2.id, other.id])
    assert [v.seq for v in repo.log("lenet")] == [3, 2, 1]
    assert merged.parents == (v2.id, other.id)
    assert repo.resolve("lenet") == merged.id
    assert repo.resolve("lenet@2") == v2.id
    assert repo.resolve(v1.id[:10]) == v1.id
    assert repo.desc("lenet@1").children == (v2.id,)
    assert {m.name: m.derived_from for m in repo.models()}["lenet"] == ("alt@1",)


def test_unknown_and_ambiguous_references_list_candidates(repo) -> None:
    repo.commit(tiny_cnn(), name="lenet", message="one")
    with pytest.raises(RefError, match=r"unknown version reference 'lenett'; did you mean lenet\?"):
        repo.resolve("lenett")
    with pytest.raises(RefError, match=r"'lenet@7' does not exist \(use lenet@1..lenet@1\)"):
        repo.resolve("lenet@7")
    # Two ids sharing a prefix, written directly so the collision is certain.
    with repo.catalog.write() as con:
        for i, vid in enumerate(("abcd" + "1" * 60, "abcd" + "2" * 60)):
            con.execute("INSERT INTO versions VALUES (?, 'twin', ?, 'm', 'a', now(), NULL, 0, 0, 0, NULL)", [vid, i + 1])
    with pytest.raises(RefError, match=r"reference 'abcd' is ambiguous: it matches abcd11111111 \(twin@1\), abcd22222222 \(twin@2\)"):
        repo.resolve("abcd")
    assert repo.resolve("abcd2") == "abcd" + "2" * 60


def test_identical_tensors_are_stored_once(repo) -> None:
    base = tiny_cnn()
    repo.commit(base, name="base", message="pre-trained")
    before = repo.stats()
    tuned = tiny_cnn()
    tuned.load_state_dict(base.state_dict())
    with torch.no_grad():
        tuned.fc2.weight.add_(0.5)  # only the head changes: the frozen layers are shared
    repo.commit(tuned, name="base", message="fine-tuned head")
    after = repo.stats()
    assert after.n_tensors - before.n_tensors == 1
    assert after.logical_bytes == 2 * before.logical_bytes
    fc2_bytes = tuned.fc2.weight.numel() * 4
    assert after.stored_bytes - before.stored_bytes <= fc2_bytes + 64


def test_diff_reports_layers_tensors_hparams_and_metrics(repo) -> None:
    a = tiny_cnn()
    repo.commit(a, name="m", message="a", hparams={"lr": 0.1}, metrics={"loss": [1.0, 0.5]})
    b = tiny_cnn(n_classes=3)
    b.load_state_dict({k: v for k, v in a.state_dict().items() if not k.startswith("fc2")}, strict=False)
    with torch.no_grad():
        b.conv1.weight[0, 0, 0, 0] += 1.0
    repo.commit(b, name="m", message="b", hparams={"lr": 0.01, "wd": 1e-4}, metrics={"loss": [0.9, 0.4]})
    d = repo.diff("m@1", "m@2")
    layers = {c.name: c.status for c in d.layers}
    assert layers == {"fc2": "changed"}
    tensors = {t.name: t for t in d.tensors}
    assert tensors["fc2.weight"].status == "shape_changed"
    assert tensors["conv1.weight"].status == "changed"
    assert tensors["conv1.weight"].frac_changed == pytest.approx(1 / 36)
    w = a.conv1.weight.detach().double()
    assert tensors["conv1.weight"].rel_l2 == pytest.approx(1.0 / float(w.norm()), rel=1e-6)
    assert "conv2.weight" not in tensors  # identical ones only with include_same
    assert {c.key: (c.status, c.old, c.new) for c in d.hparams} == {"lr": ("changed", 0.1, 0.01), "wd": ("added", None, 1e-4)}
    assert {c.key: c.new for c in d.metrics} == {"loss": 0.4}
    full = repo.diff("m@1", "m@2", include_same=True)
    assert {t.name: t.status for t in full.tensors}["conv2.weight"] == "identical"
    assert repo.diff("m@1", "m@1").identical


def test_desc_summarizes_a_version(repo) -> None:
    repo.commit(tiny_cnn(), name="m", message="a", hparams={"lr": 0.1}, metrics={"acc": [(1, 0.5), (2, 0.7)]},
                files={"notes/readme.txt": b"hello"})
    d = repo.desc("m")
    assert [l.name for l in d.layers][:2] == ["conv1", "pool1"]
    assert d.version.n_params == sum(p.numel() for p in tiny_cnn().parameters())
    assert (d.metrics[0].name, d.metrics[0].last, d.metrics[0].last_step, d.metrics[0].min) == ("acc", 0.7, 2, 0.5)
    assert [(f.path, f.size) for f in d.files] == [("notes/readme.txt", 5)]
    assert repo.files("m") == {"notes/readme.txt": b"hello"}


def test_snapshots_are_kept_and_checked_out(repo) -> None:
    snaps = [tiny_cnn(seed) for seed in range(3)]
    repo.commit(snaps[-1], name="run", message="3 epochs", snapshots=snaps[:-1], snapshot_steps=[1, 2, 3])
    assert repo.desc("run").n_snapshots == 3
    for i, s in enumerate(snaps):
        assert_bit_exact(repo.checkout("run", snapshot=i, rebuild_module=False).state_dict, s.state_dict())
    with pytest.raises(InputError, match="has 3 snapshot"):
        repo.checkout("run", snapshot=5)


def test_copy_starts_a_new_model_with_lineage(repo) -> None:
    v = repo.commit(tiny_cnn(), name="base", message="a", hparams={"lr": 1})
    c = repo.copy("base", "variant")
    assert (c.model, c.seq, c.parents) == ("variant", 1, (v.id,))
    assert_bit_exact(repo.checkout("variant").state_dict, repo.checkout("base").state_dict)
    with pytest.raises(InputError, match="model 'variant' already exists"):
        repo.copy("base", "variant")


def test_state_dict_inherits_parent_graph_when_it_fits(repo) -> None:
    repo.commit(tiny_cnn(), name="m", message="graph")
    repo.commit(tiny_cnn(5).state_dict(), name="m", message="weights only", parent="m")
    assert repo.desc("m@2").rebuildable
    with pytest.raises(WeightsError, match="the weights lack 'conv1.bias', which layer 'conv1' \\(Conv2d\\) declares"):
        repo.commit({"other": torch.zeros(2)}, name="m", message="unrelated", parent="m")
    extra = dict(tiny_cnn().state_dict(), extra=torch.zeros(1))
    with pytest.raises(WeightsError, match="the weights hold 'extra', which the parent's network does not declare; declare the new network"):
        repo.commit(extra, name="m", message="more", parent="m")
    repo.commit({"other": torch.zeros(2)}, name="m", message="new lineage", parent=())  # no parent: no graph
    assert repo.desc("m@3").traced is None and repo.stats().n_versions == 3


@pytest.mark.parametrize("message", ["", "   ", b"\xff\xfe bad", "nul\x00byte"])
def test_bad_messages_are_refused_and_nothing_is_written(repo, message) -> None:
    with pytest.raises(InputError, match="message"):
        repo.commit(tiny_cnn(), name="m", message=message)
    assert repo.stats().n_versions == 0 and repo.stats().n_objects == 0


def test_bad_names_and_hparams_are_refused(repo) -> None:
    with pytest.raises(InputError, match="invalid model name 'a b'"):
        repo.commit(tiny_cnn(), name="a b", message="x")
    with pytest.raises(InputError, match="hyperparameter 'lr' = .* is not a JSON value"):
        repo.commit(tiny_cnn(), name="m", message="x", hparams={"lr": object()})
    with pytest.raises(WeightsError, match="does not hold a state dict"):
        repo.commit({"w": [1, 2]}, name="m", message="x")


def test_open_repo_finds_the_repository_above_and_refuses_non_repositories(repo, tmp_path, monkeypatch) -> None:
    sub = repo.root / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert modelhub.open_repo().root == repo.root
    with pytest.raises(RepoError, match="is not inside a dlv repository .* run `dlv init`"):
        modelhub.open_repo(tmp_path / "elsewhere")
    with pytest.raises(RepoError, match="already a dlv repository"):
        modelhub.init_repo(repo.root)


def test_files_are_stored_relative_to_the_working_folder(repo, tmp_path, monkeypatch) -> None:
    (repo.root / "cfg").mkdir()
    (repo.root / "cfg" / "train.toml").write_text("lr = 0.1")
    monkeypatch.chdir(repo.root / "cfg")
    assert repo.add(["train.toml"]) == [("cfg/train.toml", 8)]
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    with pytest.raises(InputError, match="outside.txt is outside the working folder .* copy it into the folder first"):
        repo.add([outside])
    v = repo.commit(tiny_cnn(), name="m", message="with config", files=[repo.root / "cfg" / "train.toml"])
    assert repo.files(v.id) == {"cfg/train.toml": b"lr = 0.1"}


def test_parent_defaults_to_the_latest_version_of_the_model(repo) -> None:
    v1 = repo.commit(tiny_cnn(1), name="m", message="one")
    v2 = repo.commit(tiny_cnn(2), name="m", message="two")
    v3 = repo.commit(tiny_cnn(3), name="m", message="fresh start", parent=())
    assert (v1.parents, v2.parents, v3.parents) == ((), (v1.id,), ())
