"""Training runs (modelhub/repo/runs.py): logging as it goes, snapshots, status at exit, crash recovery."""
from __future__ import annotations

import json
import re
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import modelhub
from modelhub.errors import InputError, RefError

from helpers import tiny_cnn


def _train(model: nn.Module, steps: int = 1) -> None:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(4, 1, 8, 8, generator=g)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_run_commits_a_version_with_metrics_snapshots_and_status(repo):
    net = tiny_cnn(0)
    with repo.run("cnn", hparams={"lr": 0.1, "opt": "sgd"}, model=net) as run:
        for epoch in range(3):
            _train(net)
            run.log(step=epoch, loss=1.0 / (epoch + 1), acc=torch.tensor(0.5 + epoch / 10))
            run.snapshot(step=epoch)
    assert run.status == "finished"
    v = run.version
    assert v.ref == "cnn@1" and v.message == f"run {run.id[:8]} finished"
    desc = repo.desc("cnn@1")
    assert desc.hparams == {"lr": 0.1, "opt": "sgd"}
    assert desc.n_snapshots == 3  # the final weights equal the last snapshot: no duplicate
    assert {m.name: (m.n_points, m.last) for m in desc.metrics} == {"loss": (3, 1 / 3), "acc": (3, pytest.approx(0.7))}
    assert desc.layers, "the network graph is kept"
    record = json.loads(repo.files("cnn@1")["run.json"])
    assert record["status"] == "finished" and record["run"] == run.id
    assert record["environment"]["torch"] == torch.__version__ and record["environment"]["device"] == "cpu"
    ck = repo.checkout("cnn@1")
    for k, t in net.state_dict().items():
        assert torch.equal(ck.state_dict[k], t)
    info = repo.run_info(run.id[:8])
    assert (info.state, info.version_id, info.n_snapshots) == ("finished", v.id, 3)
    assert repo.run_of("cnn@1").id == run.id and set(repo.runs_of([v.id])) == {v.id}
    assert repo.run_metrics(run.id)["loss"] == [(0, 1.0), (1, 0.5), (2, 1 / 3)]


def test_frozen_tensors_of_snapshots_are_stored_once(repo):
    net = tiny_cnn(1)
    for p in list(net.parameters())[:2]:  # freeze the first layer
        p.requires_grad_(False)
    frozen = list(net.state_dict())[:2]
    with repo.run("frozen", model=net) as run:
        for epoch in range(4):
            _train(net)
            run.log(loss=float(epoch))
            run.snapshot()
    with repo.catalog.read() as con:
        per_name = dict(con.execute(
            "SELECT name, count(DISTINCT tensor_hash) FROM snapshot_tensors WHERE version_id = ? GROUP BY name",
            [run.version.id]).fetchall())
    assert all(per_name[n] == 1 for n in frozen)
    assert max(per_name.values()) == 4


def test_failed_run_keeps_the_exception_message_and_commits_its_snapshots(repo):
    net = tiny_cnn(2)
    with pytest.raises(RuntimeError, match="diverged"):
        with repo.run("cnn", model=net) as run:
            run.log(step=0, loss=1.0)
            run.snapshot()
            run.log(step=1, loss=math.inf)
            raise RuntimeError("loss diverged")
    info = repo.run_info(run.id)
    assert (info.state, info.status_message) == ("failed", "RuntimeError: loss diverged")
    v = repo.version(info.version_id)
    assert v.message == f"run {run.id[:8]} failed: RuntimeError: loss diverged"
    assert repo.run_metrics(run.id)["loss"] == [(0, 1.0), (1, math.inf)]


def test_run_without_snapshot_records_its_status_and_commits_nothing(repo):
    with repo.run("nothing") as run:
        run.log(loss=2.0)
        run.log(loss=1.0)
    assert run.version is None
    info = repo.run_info(run.id)
    assert (info.state, info.version_id, info.last_step) == ("finished", None, 1)
    assert repo.log() == []


def test_run_parent_and_message(repo):
    base = repo.commit(tiny_cnn(3), name="base", message="pretrained")
    net = tiny_cnn(3)
    with repo.run("tuned", parent="base", model=net, message="fine-tune of base") as run:
        _train(net)
        run.log(loss=0.5)
    assert run.version.parents == (base.id,) and run.version.message == "fine-tune of base"
    assert repo.run_of("base") is None and repo.run_of("tuned").id == run.id


def test_runs_refuse_bad_input(repo):
    with pytest.raises(InputError, match="invalid hyperparameter name"):
        repo.run("x", hparams={"bad name": 1})
    with repo.run("x") as run:
        with pytest.raises(InputError, match="is not a number"):
            run.log(loss="low")
        with pytest.raises(InputError, match="tensor of 4 values"):
            run.log(loss=torch.ones(4))
        with pytest.raises(InputError, match="needs a model"):
            run.snapshot()
    with pytest.raises(InputError, match="has ended"):
        run.log(loss=1.0)
    with pytest.raises(RefError, match="no run with id"):
        repo.run_info("abcdef")
    with pytest.raises(RefError, match="not a run id"):
        repo.run_info("cnn@1")
    with pytest.raises(InputError, match="already ended"):
        repo.commit_run(run.id)


def test_snapshots_of_a_running_run_survive_gc(repo):
    net = tiny_cnn(4)
    run = repo.run("cnn", model=net)
    run.snapshot()
    repo.gc(grace_s=0)
    version = run.finish()
    ck = repo.checkout(version.ref)
    assert all(torch.equal(ck.state_dict[k], t) for k, t in net.state_dict().items())
    assert repo.fsck().ok


def test_environment_records_the_working_folders_git_commit(repo, tmp_path, monkeypatch):
    work = tmp_path / "code"
    work.mkdir()
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    (work / "train.py").write_text("print('hi')\n")
    subprocess.run(git + ["add", "train.py"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "x"], check=True)
    head = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(work)
    with repo.run("env") as run:
        pass
    env = repo.run_info(run.id).environment
    assert env["git_commit"] == head and env["git_dirty"] is False
    assert env["cwd"] == str(work) and env["torch"] == torch.__version__


_CHILD = textwrap.dedent("""
    import sys, time, torch
    sys.path.insert(0, {tests!r})
    import modelhub
    from helpers import tiny_cnn
    repo = modelhub.open_repo({root!r})
    net = tiny_cnn(5)
    run = repo.run("killed", hparams={{"lr": 0.1}}, model=net, flush_every_s=3600)
    run.log(step=0, loss=3.0)
    run.snapshot()            # flushes step 0 into the catalog
    for step in range(1, 6):  # these stay in the journal: the next flush is an hour away
        run.log(step=step, loss=3.0 - step / 2)
    print(run.id, flush=True)
    time.sleep(600)
""")


def _killed_run(repo) -> str:
    code = _CHILD.format(tests=str(Path(__file__).parent), root=str(repo.root))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(modelhub.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        run_id = child.stdout.readline().strip()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert run_id, "the child failed before logging"
    return run_id


@pytest.mark.slow
def test_killed_run_is_unfinished_and_can_be_committed(repo):
    run_id = _killed_run(repo)
    info = repo.run_info(run_id)
    assert (info.state, info.status, info.n_snapshots) == ("unfinished", "running", 1)
    assert repo.run_metrics(run_id)["loss"] == [(0, 3.0)]   # flushed; the rest is in the journal
    version = repo.commit_run(run_id)
    assert repo.run_info(run_id).state == "finished"
    desc = repo.desc(version.ref)
    assert [m.n_points for m in desc.metrics] == [6] and desc.hparams == {"lr": 0.1}
    ck = repo.checkout(version.ref)
    assert all(torch.equal(ck.state_dict[k], t) for k, t in tiny_cnn(5).state_dict().items())


@pytest.mark.slow
def test_killed_run_can_be_resumed(repo):
    run_id = _killed_run(repo)
    net = tiny_cnn(5)
    with repo.resume_run(run_id[:10], model=net) as run:
        run.log(loss=0.1)   # continues after the last step the killed process logged
        _train(net)
    steps = [s for s, _ in repo.run_metrics(run_id)["loss"]]
    assert steps == [0, 1, 2, 3, 4, 5, 6]
    assert repo.desc(run.version.ref).n_snapshots == 2
    with pytest.raises(InputError, match="already ended"):
        repo.resume_run(run_id)


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train_run.py", "train_lightning.py"])
def test_training_examples_commit_a_run(tmp_path, script):
    if script == "train_lightning.py":
        pytest.importorskip("lightning.pytorch", reason="the Lightning example needs the 'lightning' extra")
    pytest.importorskip("sklearn", reason="the examples train on scikit-learn's digits")
    examples = Path(__file__).parents[1] / "examples"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(modelhub.__file__).parents[1]),
                                                                     os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, str(examples / script), "--repo", "demo", "--epochs", "2"],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    repo = modelhub.open_repo(tmp_path / "demo")
    [run] = repo.runs()
    assert run.state == "finished" and run.n_snapshots == 2
    desc = repo.desc(run.version_id)
    assert {"val_loss", "val_acc"} <= {m.name for m in desc.metrics}
    assert f"committed {desc.version.ref}" in out.stdout


def test_dlv_runs_lists_runs_and_commits_an_unfinished_one(cli):
    cli("init")
    repo = modelhub.open_repo(cli.work)
    with repo.run("cnn", model=tiny_cnn(6)) as done:
        done.log(loss=1.0)
    orphan = repo.run("cnn", model=tiny_cnn(7))
    orphan.log(step=3, loss=0.5)
    orphan.snapshot()
    dead = subprocess.Popen(["true"])
    dead.wait()
    with repo.catalog.write() as con:
        con.execute("UPDATE runs SET pid = ? WHERE id = ?", [dead.pid, orphan.id])
    code, out, _ = cli("runs")
    assert code == 0
    rows = {line.split()[0]: line.split()[2] for line in out.splitlines()[2:]}
    assert rows == {done.id[:8]: "finished", orphan.id[:8]: "unfinished"}
    code, out, err = cli("runs", "--commit", orphan.id[:8], "--failed", "preempted")
    assert code == 0, err
    assert re.match(rf"committed cnn@2 \([0-9a-f]+\) from run {orphan.id[:8]}, failed", out)
    code, out, _ = cli("runs", "--json", "cnn")
    states = {r["id"]: (r["state"], r["status_message"]) for r in json.loads(out)}
    assert states[orphan.id] == ("failed", "preempted")
    code, _, err = cli("runs", "--commit", orphan.id)
    assert code != 0 and "already ended" in err


def test_a_repository_made_before_runs_is_upgraded_when_opened(tmp_path):
    repo = modelhub.init_repo(tmp_path / "old")
    repo.commit(tiny_cnn(0), name="cnn", message="before runs")
    with repo.catalog.write() as con:   # back to schema version 1
        for table in ("run_snapshot_tensors", "run_snapshots", "run_metrics", "runs", "tag_history", "tags",
                      "encoding_sizes"):
            con.execute(f"DROP TABLE {table}")
        con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    reopened = modelhub.open_repo(tmp_path / "old")
    with reopened.run("cnn", model=tiny_cnn(1)) as run:
        run.log(loss=1.0)
    assert run.version.ref == "cnn@2" and reopened.run_info(run.id).state == "finished"


def test_log_desc_and_dql_show_the_run_a_version_came_from(cli):
    cli("init")
    repo = modelhub.open_repo(cli.work)
    with repo.run("cnn", model=tiny_cnn(8)) as done:
        done.log(step=0, loss=1.0)
        done.snapshot()
    with pytest.raises(RuntimeError, match="diverged"):
        with repo.run("cnn", model=tiny_cnn(9)) as failed:
            failed.log(step=0, loss=math.inf)
            failed.snapshot()
            raise RuntimeError("loss diverged")
    repo.commit(tiny_cnn(10), name="cnn", message="by hand")

    code, out, err = cli("log", "cnn")
    assert code == 0, err
    assert re.search(r"\brun\s+message\s*$", out.splitlines()[0])
    status = {m.group(1): m.group(2) for m in re.finditer(r"^(cnn@\d)\s.*\s(finished|failed|-)\s+(?:run|by)", out, re.M)}
    assert status == {"cnn@1": "finished", "cnn@2": "failed", "cnn@3": "-"}
    code, out, _ = cli("--json", "log", "cnn")
    assert {v["ref"]: v["run_status"] for v in json.loads(out)} == {"cnn@1": "finished", "cnn@2": "failed",
                                                                   "cnn@3": None}

    code, out, err = cli("desc", "cnn@2")
    assert code == 0, err
    assert re.search(rf"run\s+failed \(run {failed.id[:8]}, last step 0\): RuntimeError: loss diverged", out)
    assert re.search(rf"environment\s+torch {re.escape(torch.__version__)}, device cpu", out)
    code, out, _ = cli("--json", "desc", "cnn@1")
    assert json.loads(out)["run"]["id"] == done.id
    code, out, _ = cli("desc", "cnn@3")
    assert "environment" not in out

    code, out, err = cli("--json", "query", 'select m.name, m.seq, m.run_status where m.run_status == "failed"')
    assert code == 0, err
    assert [(r["name"], r["seq"], r["run_status"]) for r in json.loads(out)["rows"]] == [("cnn", 2, "failed")]
    code, out, _ = cli("--json", "query", "select m.seq where m.run_status == null")
    assert [r["seq"] for r in json.loads(out)["rows"]] == [3]
