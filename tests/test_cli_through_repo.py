"""The CLI goes through `Repo` only: the methods it uses, and what moved behind them.

`dlv commit` lets the commit choose the parent inside its write transaction,
and its metrics-file parser is public API (`modelhub.repo.load_metrics_file`).
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import modelhub
from helpers import assert_bit_exact, tiny_cnn
from modelhub.errors import DataError, InputError, RefError
from modelhub.repo import load_metrics_file

PACKAGE = Path(modelhub.__file__).parent


def _weights(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {"w": torch.randn(8, 8), "b": torch.randn(8)}


# -- dlv commit --------------------------------------------------------------------------------

def test_commit_takes_as_parent_the_latest_version_when_it_writes(cli, monkeypatch) -> None:
    """A version committed by someone else while `dlv commit` starts up becomes its parent."""
    assert cli("init")[0] == 0
    save_file(_weights(0), str(cli.work / "w.safetensors"))
    assert cli("commit", "-m", "one", "--name", "net", "--weights", "w.safetensors")[0] == 0
    other = modelhub.open_repo(cli.work)
    from modelhub.repo import commit as commit_op   # a safetensors file is opened (streamed) by the commit
    real_load = commit_op.open_weights

    def load_while_another_process_commits(path):
        other.commit(_weights(1), name="net", message="two, concurrent")
        return real_load(path)

    monkeypatch.setattr(commit_op, "open_weights", load_while_another_process_commits)
    code, out, err = cli("commit", "-m", "three", "--name", "net", "--weights", "w.safetensors", "--json")
    assert code == 0, err
    assert json.loads(out)["parents"] == [other.version("net@2").id]


def test_commit_without_weights_keeps_the_parents_weights_and_network(cli) -> None:
    assert cli("init")[0] == 0
    repo = modelhub.open_repo(cli.work)
    repo.commit(tiny_cnn(0), name="cnn", message="trained")
    code, out, err = cli("commit", "-m", "evaluated", "--name", "cnn", "--metric", "acc=0.9", "--hparam", "lr=0.1",
                         "--json")
    assert code == 0, err
    v2 = json.loads(out)
    assert v2["ref"] == "cnn@2" and v2["parents"] == [repo.version("cnn@1").id]
    a, b = repo.checkout("cnn@1"), repo.checkout("cnn@2")
    assert_bit_exact(a.state_dict, b.state_dict)
    assert b.graph is not None and b.graph.hash == a.graph.hash and b.hparams == {"lr": 0.1}
    # an explicit parent: its weights, not the latest version's
    repo.commit(tiny_cnn(1), name="cnn", message="retrained")
    assert cli("commit", "-m", "again", "--name", "cnn", "--parent", "cnn@1")[0] == 0
    assert_bit_exact(repo.checkout("cnn@4").state_dict, a.state_dict)


@pytest.mark.parametrize("extra", [(), ("--no-parent",)])
def test_commit_without_weights_or_parent_is_refused(cli, extra) -> None:
    assert cli("init")[0] == 0
    code, _, err = cli("commit", "-m", "x", "--name", "fresh", *extra)
    assert code == 2 and "nothing to commit: " in err and "give --weights FILE and/or --model FILE.py:Factory" in err
    assert modelhub.open_repo(cli.work).log() == []


# -- the Repo methods behind the commands -------------------------------------------------------

def test_commit_parent_weights_from_the_api(repo) -> None:
    with pytest.raises(InputError, match="nothing to commit: model 'cnn' has no version whose weights"):
        repo.commit_parent_weights(name="cnn", message="no weights yet")
    v1 = repo.commit(tiny_cnn(0), name="cnn", message="trained")
    with pytest.raises(InputError, match="nothing to commit: give --weights"):
        repo.commit_parent_weights(name="cnn", message="no parent", parent=())
    with pytest.raises(RefError, match="unknown version reference 'nope'"):
        repo.commit_parent_weights(name="cnn", message="bad parent", parent="nope")
    v2 = repo.commit_parent_weights(name="cnn", message="metrics", metrics={"acc": 0.5})
    assert v2.parents == (v1.id,) and [v.ref for v in repo.log("cnn")] == ["cnn@2", "cnn@1"]
    assert repo.desc("cnn@2").metrics[0].last == 0.5


def test_write_checkout_writes_weights_and_files_and_refuses_to_overwrite(repo, tmp_path) -> None:
    state = _weights(0)
    repo.commit(state, name="net", message="one", files={"notes/readme.txt": b"hello"})
    out = tmp_path / "out.safetensors"
    w = repo.write_checkout("net", out, files_dir=tmp_path / "files")
    assert (w.version.ref, w.snapshot, w.output, w.n_tensors, w.files) == ("net@1", 0, str(out), 2, ("notes/readme.txt",))
    assert w.bytes == out.stat().st_size
    assert_bit_exact(dict(sorted(load_file(str(out)).items())), dict(sorted(state.items())))
    assert (tmp_path / "files" / "notes" / "readme.txt").read_bytes() == b"hello"
    with pytest.raises(InputError, match="out.safetensors exists; pass --force"):
        repo.write_checkout("net", out)
    assert repo.write_checkout("net", out, overwrite=True).bytes == w.bytes
    with pytest.raises(InputError, match="give a path ending in .safetensors"):
        repo.write_checkout("net", tmp_path / "x.bin")


def test_dataset_log_names_the_known_datasets_when_there_is_no_such_dataset(repo, tmp_path) -> None:
    import numpy as np
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2), np.float32), y=np.arange(4))
    repo.data_add("digits", [tmp_path / "d.npz"])
    repo.data_add("digits", [tmp_path / "d.npz"])
    assert [v.ref for v in repo.dataset_log("digits")] == ["digits@1", "digits@2"]
    with pytest.raises(DataError, match=r"no dataset named 'digit' \(known: digits\)"):
        repo.dataset_log("digit")


def test_vocabulary_lists_what_a_query_may_name(repo) -> None:
    repo.commit(tiny_cnn(0), name="cnn", message="x", hparams={"lr": 0.1}, metrics={"acc": 0.5})
    vocab = repo.vocabulary()
    assert vocab.models == {"cnn"} and "lr" in vocab.hparam_keys and "acc" in vocab.metric_names


def test_archive_and_its_dry_run_through_the_repo(repo) -> None:
    repo.commit(_weights(0), name="net", message="one")
    rows = repo.archive_dry_run([1.0, 2.0])
    assert [r["alpha"] for r in rows] == [1.0, 2.0]
    assert repo.archive(alpha=2.0).n_tensors == 2


# -- metrics files ------------------------------------------------------------------------------

def test_load_metrics_file_reads_both_record_forms_after_the_given_points(tmp_path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1, "loss": 0.9, "acc": 0.5}\n\n{"name": "loss", "step": 2, "value": 0.7}\n{"loss": 0.6}\n')
    base = {"loss": [(0, 1.0)]}
    assert load_metrics_file(path, base) == {"loss": [(0, 1.0), (1, 0.9), (2, 0.7), (3, 0.6)], "acc": [(1, 0.5)]}
    assert base == {"loss": [(0, 1.0)]}  # the caller's series are not changed
    with pytest.raises(InputError, match=r"m.jsonl:1: metric 'loss' has step 1 twice"):
        load_metrics_file(path, {"loss": [(1, 1.0)]})


@pytest.mark.parametrize("content, message", [
    (b'{"step": 0, "loss": "high"}\n', r"bad.jsonl:1 is not a metrics record"),
    (b'[1, 2]\n', r"bad.jsonl:1 is not a metrics record"),
    (b'{"loss": 0.1}\n\xff\xfe\n', r"metrics file .*bad.jsonl is not UTF-8 text"),
])
def test_load_metrics_file_refuses_what_is_no_metrics_record(tmp_path, content, message) -> None:
    (tmp_path / "bad.jsonl").write_bytes(content)
    with pytest.raises(InputError, match=message):
        load_metrics_file(tmp_path / "bad.jsonl")
    with pytest.raises(InputError, match="metrics file .*missing.jsonl does not exist"):
        load_metrics_file(tmp_path / "missing.jsonl")


# -- layering -----------------------------------------------------------------------------------

def _imports(path: Path) -> set[str]:
    """The modelhub modules ``path`` imports, as absolute names."""
    package = "modelhub." + path.parent.name
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            names.update([f"{base}.{node.module}"] if node.module else [f"{base}.{a.name}" for a in node.names])
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("modelhub"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("modelhub"):
            names.add(node.module)
    return names


# What the command line and the REPL may import besides their own modules: the Repo facade
# (package modelhub.repo), errors, leaf utilities, the REPL, the remote layer above repo, DQL's
# tokens for highlighting and completion, and the translation of DuckDB's and storage's errors at
# the one exit-code boundary; and the web UI (`dlv ui` starts it: a front end beside the CLI, which
# reads through its own read-only reader).
ALLOWED = {
    "modelhub.__version__", "modelhub.repo", "modelhub.errors", "modelhub.tensorio", "modelhub.sizes", "modelhub.tables", "modelhub.progress", "modelhub.repl",
    "modelhub.remote", "modelhub.remote.progress", "modelhub.dql.lexicon", "modelhub.dql.vocabulary",
    "modelhub.ui.server",
}
BOUNDARY = {("exitcodes.py", "modelhub.catalog.db"), ("exitcodes.py", "modelhub.storage.errors"),
            ("exitcodes.py", "modelhub.storage_boundary")}


@pytest.mark.parametrize("folder", ["cli", "repl"])
def test_the_cli_and_the_repl_reach_the_repository_through_repo_only(folder) -> None:
    for path in sorted((PACKAGE / folder).glob("*.py")):
        for name in _imports(path):
            if name.startswith(f"modelhub.{folder}") or name in ALLOWED or (path.name, name) in BOUNDARY:
                continue
            pytest.fail(f"{folder}/{path.name} imports {name}; give Repo a method for what it needs instead")
        text = path.read_text()
        assert not re.search(r"catalog\.(read|write)\(|con\.execute", text), f"{folder}/{path.name} opens the catalog"
