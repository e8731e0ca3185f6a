"""Track a plain PyTorch training as a run: metrics as they happen, a snapshot per epoch,
a version committed at the end (docs/RUNS.md).

Trains a small CNN on scikit-learn's digits (shipped with the package: nothing is
downloaded). Run it, look at it, then kill one mid-way and commit what it logged:

    python examples/train_run.py --repo runs-demo --epochs 5
    dlv ui --repo runs-demo                       # metric curves, the run's status and environment
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn

import modelhub


class DigitsCNN(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(width * 4 * 4, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv1(x))), 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default="runs-demo", help="repository folder (created if missing)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()

    root = Path(args.repo)
    repo = modelhub.open_repo(root) if (root / ".dlv").is_dir() else modelhub.init_repo(root)

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    train_x, train_y, val_x, val_y = x[:1500], y[:1500], x[1500:], y[1500:]

    torch.manual_seed(0)
    model = DigitsCNN()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    hparams = {"lr": args.lr, "momentum": 0.9, "epochs": args.epochs, "batch_size": 64}

    # The version is committed when the block ends: status "finished", or "failed" with
    # the exception's message if training raises. A killed process leaves an unfinished
    # run: repo.resume_run(id) continues it, repo.commit_run(id) commits what it logged.
    with repo.run("digits-cnn", hparams=hparams, model=model) as run:
        step = 0
        for epoch in range(args.epochs):
            model.train()
            for i in range(0, len(train_x), 64):
                loss = nn.functional.cross_entropy(model(train_x[i:i + 64]), train_y[i:i + 64])
                opt.zero_grad()
                loss.backward()
                opt.step()
                run.log(step=step, train_loss=loss.item())
                step += 1
            model.eval()
            with torch.no_grad():
                logits = model(val_x)
            run.log(step=step, val_loss=nn.functional.cross_entropy(logits, val_y).item(),
                    val_acc=(logits.argmax(1) == val_y).float().mean().item())
            run.snapshot(step=step)          # a checkpoint per epoch; unchanged tensors are stored once
    print(f"committed {run.version.ref} from run {run.id[:8]} ({run.status})")


if __name__ == "__main__":
    main()
