"""modelhub quickstart: build a demo repository and show what dlv does.

Trains a small CNN on scikit-learn's digits (8x8 images, shipped with the
package: nothing is downloaded), commits a version per training stage with
hyperparameters, metric series and snapshots, fine-tunes a copy with frozen
convolutions, and then walks through log, desc, diff, checkout, stats, archive,
fsck and DQL queries -- through the same `dlv` commands a user types -- and ends
with two labeling cycles of model selection (`dlv data add`, `evaluate`).

    python examples/quickstart.py [--dir demo-repo]
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

import modelhub
from modelhub.cli import main as dlv


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 2 * 2, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool1(torch.relu(self.conv1(x)))
        x = self.pool2(torch.relu(self.conv2(x)))
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


def load_digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits as sk_digits
        d = sk_digits()
        x, y = d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)
    except ImportError:  # synthetic stand-in: class-dependent blobs
        rng = np.random.default_rng(0)
        y = rng.integers(0, 10, 1500)
        x = (rng.normal(size=(1500, 8, 8)) * 0.3 + y[:, None, None] / 10).astype(np.float32)
    x = torch.from_numpy(x).unsqueeze(1)
    y = torch.from_numpy(y)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    n_train = int(0.8 * len(y))
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def train(model: nn.Module, data, *, epochs: int, lr: float, frozen: tuple[str, ...] = ()):
    xtr, ytr, xva, yva = data
    for name, p in model.named_parameters():
        p.requires_grad = not name.startswith(frozen)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    losses, accs, snaps = [], [], []
    g = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(ytr), generator=g)
        total = 0.0
        for i in range(0, len(ytr), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        model.eval()
        with torch.no_grad():
            accs.append(float((model(xva).argmax(1) == yva).float().mean()))
        losses.append(total / len(ytr))
        snaps.append({k: v.clone() for k, v in model.state_dict().items()})
    return losses, accs, snaps


def run(cmd: str, repo_dir: Path) -> None:
    print(f"\n$ dlv {cmd}")
    sys.stdout.flush()
    code = dlv([*shlex.split(cmd), "--repo", str(repo_dir)])
    if code != 0:
        raise SystemExit(f"dlv {cmd} failed with exit code {code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="demo-repo", help="folder for the demo repository (recreated)")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(min(4, torch.get_num_threads()))
    root = Path(args.dir)
    if root.exists():
        shutil.rmtree(root)
    repo = modelhub.init_repo(root)
    print(f"created repository {repo.paths.dlv}")
    data = load_digits()

    model = DigitsCNN()
    losses, accs, snaps = train(model, data, epochs=3, lr=0.05)
    v1 = repo.commit(model, name="digits-cnn", message="baseline: 3 epochs SGD lr=0.05",
                     hparams={"lr": 0.05, "epochs": 3, "optimizer": "sgd"},
                     metrics={"loss": losses, "val_acc": accs}, snapshots=snaps[:-1], snapshot_steps=[1, 2, 3])
    print(f"committed {v1.ref}: val_acc {accs[-1]:.3f}")

    losses2, accs2, snaps2 = train(model, data, epochs=3, lr=0.01)
    v2 = repo.commit(model, name="digits-cnn", message="continue 3 epochs at lr=0.01", parent=v1.id,
                     hparams={"lr": 0.01, "epochs": 6, "optimizer": "sgd"},
                     metrics={"loss": list(enumerate(losses + losses2)), "val_acc": accs + accs2},
                     snapshots=snaps2[:-1], snapshot_steps=[4, 5, 6])
    print(f"committed {v2.ref}: val_acc {accs2[-1]:.3f}")

    # Fine-tune only the classifier head on a copy: the frozen convolutions are stored once.
    repo.copy(v2.ref, "digits-head", message="copy of digits-cnn@2 for head fine-tuning")
    head = repo.checkout("digits-head").module
    losses3, accs3, _ = train(head, data, epochs=2, lr=0.02, frozen=("conv1", "conv2"))
    v3 = repo.commit(head, name="digits-head", message="fine-tune fc layers, convolutions frozen",
                     hparams={"lr": 0.02, "epochs": 2, "frozen": ["conv1", "conv2"]},
                     metrics={"loss": losses3, "val_acc": accs3})
    print(f"committed {v3.ref}: val_acc {accs3[-1]:.3f}")

    run("list", root)
    run("log", root)
    run("desc digits-cnn@2", root)
    run("diff digits-cnn@2 digits-head@2", root)
    run(f"checkout digits-head -o {root / 'digits-head.safetensors'} --force", root)
    run("stats", root)
    # The parameter archive: delta-encode snapshots and fine-tunes against each other
    # (recreating any snapshot may cost at most 2x reading it whole), then verify.
    run("archive --alpha 2", root)
    run("gc --now", root)          # the superseded whole-tensor blobs (no other dlv process runs here)
    run("stats", root)
    run("fsck --deep", root)
    # DQL: metadata, metric and graph predicates in one query language.
    for query in (
        'select m where m.name like "digits%" and m.metrics["val_acc"] > 0.5 order by m.metrics["val_acc"] desc',
        'select m where m["conv[1,2]"].next has RELU and m.hparams.lr < 0.05',
        'explain slice m2 from m1 where m1.name == "digits-cnn" mutate m2.input = m1["conv2"] and m2.output = m1["fc2"]',
    ):
        run(f"query {shlex.quote(query)}", root)
    model_selection(root, data)
    print(f"\ndemo repository ready in {root}/ -- try: cd {root} && dlv log")


def model_selection(root: Path, data) -> None:
    """Two labeling cycles of model selection: 4 candidates each, the frozen convolutions
    computed once per record and reused across epochs, candidates and cycles."""
    xtr, ytr, _, _ = data
    half = len(ytr) // 2
    for k, (lo, hi) in enumerate(((0, half), (half, len(ytr))), start=1):
        np.savez(root / f"cycle{k}.npz", x=xtr[lo:hi].numpy(), y=ytr[lo:hi].numpy())
    shutil.copy(Path(__file__).with_name("eval.toml"), root / "eval.toml")   # the recipe the README shows
    query = (f'evaluate m from "digits-cnn" with config = "{root / "eval.toml"}" '
             'vary config.base_lr in [0.01, 0.001] and config.net["fc1"].lr in [0, 1]')
    for k in (1, 2):
        run(f"data add digits {root / f'cycle{k}.npz'}", root)
        run(f"query {shlex.quote(query)}", root)


if __name__ == "__main__":
    main()
