"""Every foundation command through `main([...])`: output, --json, exit codes, errors."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file



class Evil:
    """A class a hostile checkpoint would ask the unpickler to import."""

MODEL_PY = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv1(x)), 1))
"""


@pytest.fixture
def work(cli):
    assert cli("init")[0] == 0
    (cli.work / "model.py").write_text(MODEL_PY)
    sys.path.insert(0, str(cli.work))
    import importlib
    mod = importlib.import_module("model") if "model" not in sys.modules else importlib.reload(sys.modules["model"])
    sys.path.pop(0)
    torch.manual_seed(0)
    net = mod.Net()
    save_file(net.state_dict(), str(cli.work / "w1.safetensors"), metadata={"epoch": "1"})
    with torch.no_grad():
        net.fc.weight.mul_(1.5)
    save_file(net.state_dict(), str(cli.work / "w2.safetensors"))
    torch.save(net.state_dict(), cli.work / "w2.pt")
    return cli


def test_init_commit_log_list_desc(work) -> None:
    code, out, _ = work("commit", "-m", "first", "--name", "net", "--model", "model.py:Net",
                        "--weights", "w1.safetensors", "--hparam", "lr=0.1", "--hparam", "opt=sgd",
                        "--metric", "loss=1.0", "--metric", "loss=0.5")
    assert code == 0 and out.startswith("[net@1 ")
    assert work("commit", "-m", "second", "--name", "net", "--weights", "w2.pt")[0] == 0
    code, out, _ = work("log", "net")
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["ref", "id"] and lines[2].startswith("net@2") and lines[3].startswith("net@1")
    code, out, _ = work("log", "--json")
    log = json.loads(out)
    assert [v["ref"] for v in log] == ["net@2", "net@1"]
    assert log[0]["parents"] == [log[1]["id"]]
    code, out, _ = work("list")
    assert "net" in out and "2" in out.splitlines()[2]
    code, out, _ = work("desc", "net@1")
    assert code == 0
    for expected in ("conv1", "Conv2d", "out_channels=4", "lr", "0.1", "loss", "traced, rebuildable", "fc.weight", "10x256"):
        assert expected in out, expected
    desc = json.loads(work("desc", "net@2", "--json")[1])
    # graph and hparams inherited from the parent (issue 15: a weights-only commit keeps the parent's hparams)
    assert desc["hparams"] == {"lr": 0.1, "opt": "sgd"} and desc["rebuildable"] is True


def test_add_attaches_staged_files_to_the_next_commit(work) -> None:
    (work.work / "notes.md").write_text("trained on digits")
    code, out, _ = work("add", "notes.md")
    assert (code, out.strip()) == (0, "staged notes.md (17 B)")
    work("commit", "-m", "with notes", "--name", "net", "--weights", "w1.safetensors")
    files = json.loads(work("desc", "net", "--json")[1])["files"]
    assert [(f["path"], f["size"]) for f in files] == [("notes.md", 17)]
    work("commit", "-m", "no notes", "--name", "net")  # staging was consumed; parent weights reused
    assert json.loads(work("desc", "net", "--json")[1])["files"] == []


def test_checkout_writes_the_committed_bytes(work) -> None:
    work("commit", "-m", "first", "--name", "net", "--weights", "w1.safetensors")
    code, out, _ = work("checkout", "net", "-o", "out.safetensors")
    assert code == 0 and "wrote out.safetensors" in out
    assert (work.work / "out.safetensors").read_bytes() == (work.work / "w1.safetensors").read_bytes()
    code, _, err = work("checkout", "net", "-o", "out.safetensors")
    assert code == 2 and "out.safetensors exists; pass --force" in err
    assert work("checkout", "net", "-o", "out.safetensors", "--force")[0] == 0


def test_diff_shows_only_what_changed(work) -> None:
    work("commit", "-m", "a", "--name", "net", "--model", "model.py:Net", "--weights", "w1.safetensors", "--hparam", "lr=0.1")
    work("commit", "-m", "b", "--name", "net", "--weights", "w2.safetensors", "--hparam", "lr=0.01")
    code, out, _ = work("diff", "net@1", "net@2")
    assert code == 0
    assert "fc.weight  changed" in out and "0.5" in out and "100.0%" in out
    assert "conv1.weight" not in out
    assert "lr   changed  0.1    0.01" in out
    code, out, _ = work("diff", "net@1", "net@2", "--all")
    assert "conv1.weight  identical" in out
    d = json.loads(work("diff", "net@1", "net@1", "--json")[1])
    assert d["identical"] is True


def test_copy_and_stats(work) -> None:
    work("commit", "-m", "a", "--name", "net", "--weights", "w1.safetensors")
    code, out, _ = work("copy", "net", "net-ft", "-m", "start fine-tuning")
    assert code == 0 and out.startswith("[net-ft@1 ")
    assert "net@1" in work("list")[1]
    stats = json.loads(work("stats", "--json")[1])
    assert stats["n_versions"] == 2 and stats["n_tensors"] == 4
    assert stats["logical_bytes"] == 2 * sum(t.numel() * 4 for t in torch.load(work.work / "w2.pt").values())
    assert "ratio" in work("stats")[1]


def test_metrics_file(work, tmp_path) -> None:
    (work.work / "m.jsonl").write_text('{"step": 1, "loss": 0.9, "acc": 0.5}\n{"name": "loss", "step": 2, "value": 0.7}\n')
    assert work("commit", "-m", "a", "--name", "net", "--weights", "w1.safetensors", "--metrics-file", "m.jsonl")[0] == 0
    metrics = {m["name"]: m for m in json.loads(work("desc", "net", "--json")[1])["metrics"]}
    assert (metrics["loss"]["last"], metrics["loss"]["n_points"], metrics["acc"]["last"]) == (0.7, 2, 0.5)
    (work.work / "bad.jsonl").write_text("not json\n")
    code, _, err = work("commit", "-m", "a", "--name", "net", "--weights", "w1.safetensors", "--metrics-file", "bad.jsonl")
    assert code == 2 and "bad.jsonl:1 is not a metrics record" in err


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (("log", "nosuch"), 3, "unknown version reference 'nosuch'"),
        (("desc", "net@5"), 3, "'net@5' does not exist"),
        (("commit", "-m", "x", "--name", "n2", "--weights", "missing.safetensors"), 5, "does not exist; check the path"),
        (("commit", "-m", "x", "--name", "n2", "--weights", "corrupt.safetensors"), 5, "is not a valid safetensors file"),
        (("commit", "-m", "x", "--name", "n2", "--weights", "pickled.pt"), 5, "needs pickled code to load and is refused"),
        (("commit", "-m", "x", "--name", "n2", "--weights", "truncated.pt"), 5, "is not a readable torch file"),
        (("commit", "-m", "x", "--name", "n2", "--model", "model.py:Net", "--weights", "wrongshape.safetensors"), 5, "does not fit the network"),
        (("commit", "-m", "", "--name", "n2", "--weights", "w1.safetensors"), 2, "the commit message is empty"),
        (("commit", "-m", "bad \udcff byte", "--name", "n2", "--weights", "w1.safetensors"), 2, "not valid UTF-8"),
        (("commit", "--name", "n2", "--weights", "w1.safetensors"), 2, "a commit needs a message"),
        (("commit", "-m", "x", "--name", "n2"), 2, "nothing to commit"),
        (("commit", "-m", "x", "--name", "bad name", "--weights", "w1.safetensors"), 2, "invalid model name"),
        (("commit", "-m", "x", "--name", "n2", "--model", "model.py:Nope"), 2, "defines no callable 'Nope'"),
        (("commit", "-m", "x", "--name", "n2", "--weights", "w1.safetensors", "--hparam", "lr"), 2, "not of the form key=value"),
        (("checkout", "net", "-o", "x.bin"), 2, "give a path ending in .safetensors"),
        (("commit", "-m", "x", "--name", "net", "--weights", "wrongshape.safetensors"), 5, "shape mismatch for 'conv1.weight'"),
        (("nosuchcommand",), 2, "invalid choice"),
    ],
)
def test_bad_input_is_one_line_with_a_fix_and_changes_nothing(work, argv, code, message) -> None:
    work("commit", "-m", "base", "--name", "net", "--model", "model.py:Net", "--weights", "w1.safetensors")
    (work.work / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    buf = io.BytesIO()
    torch.save({"x": Evil()}, buf)  # loading this would need to run pickled code
    (work.work / "pickled.pt").write_bytes(buf.getvalue())
    (work.work / "truncated.pt").write_bytes((work.work / "w2.pt").read_bytes()[:200])
    save_file({"conv1.weight": torch.zeros(4, 1, 5, 5), "conv1.bias": torch.zeros(4),
               "fc.weight": torch.zeros(10, 256), "fc.bias": torch.zeros(10)}, str(work.work / "wrongshape.safetensors"))
    before = work("stats", "--json")[1]
    rc, out, err = work(*argv)
    assert rc == code
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert work("stats", "--json")[1] == before


def test_not_a_repository(cli) -> None:
    code, _, err = cli("log")
    assert code == 4 and "not inside a dlv repository" in err and "dlv init" in err


def test_help_for_every_command(cli, capsys) -> None:
    from modelhub.cli import build_parser, main
    _, handlers = build_parser()
    assert {"init", "add", "commit", "log", "list", "desc", "diff", "checkout", "copy", "stats"} <= set(handlers)
    for name in handlers:
        assert main([name, "--help"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: dlv {name}") and "--json" in out, name


def test_python_dash_m_modelhub_runs_the_cli(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "modelhub", "init", str(tmp_path / "r")], capture_output=True, text=True)
    assert proc.returncode == 0 and "Initialized empty dlv repository" in proc.stdout
