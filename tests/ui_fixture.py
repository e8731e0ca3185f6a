"""A small repository for the web UI's tests: two models, runs finished / failed / unfinished."""
from __future__ import annotations

import subprocess
from pathlib import Path

import torch

import modelhub

from helpers import tiny_cnn


def build_ui_repo(root: Path) -> dict[str, str]:
    """Returns names of interest: the unfinished run's id, ..."""
    repo = modelhub.init_repo(root)
    net = tiny_cnn(0)
    repo.commit(net, name="lenet", message="baseline", hparams={"lr": 0.1, "opt": "sgd"},
                metrics={"loss": [1.0, 0.6, 0.4], "acc": [0.5, 0.7, 0.8]})
    with repo.run("lenet", hparams={"lr": 0.05, "opt": "sgd"}, model=net) as run:
        for epoch in range(4):
            with torch.no_grad():
                net.fc2.weight.mul_(0.9)
            run.log(step=epoch, loss=0.9 - epoch * 0.2, acc=0.55 + epoch * 0.1)
            run.snapshot(step=epoch)
    repo.copy("lenet@1", "lenet-small")
    try:
        with repo.run("lenet-small", model=net) as failed:
            failed.log(loss=2.0)
            failed.snapshot()
            raise ValueError("NaN loss at step 1")
    except ValueError:
        pass
    # a run whose process died: its pid is one that has exited
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = repo.run("lenet", hparams={"lr": 0.01})
    orphan.log(step=0, loss=5.0)
    orphan.flush()
    with repo.catalog.write() as con:
        con.execute("UPDATE runs SET pid = ? WHERE id = ?", [dead.pid, orphan.id])
    orphan._close()
    return {"finished": run.id, "failed": failed.id, "unfinished": orphan.id}
