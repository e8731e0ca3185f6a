"""A tiny training script for the README's tour; writes its files into the current folder.

Trains LeNet (model.py) on scikit-learn's digits (a synthetic stand-in without scikit-learn)
and saves what a training run leaves behind:

    lenet.safetensors   weights after 2 epochs (safetensors)
    epoch5.pt           weights after 5 epochs (a torch.save'd state dict)
    cycle1.npz          half of the training records (arrays x, y): a first labeling cycle
    cycle2.npz          the other half: the next labeling cycle

    python train.py [--epochs 5]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from model import LeNet


def digits() -> tuple[np.ndarray, np.ndarray]:
    """(x [N, 1, 8, 8] float32 in [0, 1], y [N] int64), shuffled with a fixed seed."""
    try:
        from sklearn.datasets import load_digits
        d = load_digits()
        x, y = d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)
    except ImportError:  # class-dependent blobs, so that training still learns something
        rng = np.random.default_rng(0)
        y = rng.integers(0, 10, 1500)
        x = (rng.normal(size=(1500, 8, 8)) * 0.3 + y[:, None, None] / 10).astype(np.float32)
    perm = np.random.default_rng(0).permutation(len(y))
    return x[perm, None], y[perm]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    x, y = digits()
    n_train = int(0.8 * len(y))
    half = n_train // 2
    np.savez("cycle1.npz", x=x[:half], y=y[:half])
    np.savez("cycle2.npz", x=x[half:n_train], y=y[half:n_train])
    xtr, ytr = torch.from_numpy(x[:n_train]), torch.from_numpy(y[:n_train])
    xva, yva = torch.from_numpy(x[n_train:]), torch.from_numpy(y[n_train:])
    model = LeNet()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(1, args.epochs + 1):
        model.train()
        for i in range(0, n_train, 64):
            opt.zero_grad()
            loss = loss_fn(model(xtr[i:i + 64]), ytr[i:i + 64])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = float((model(xva).argmax(1) == yva).float().mean())
        print(f"epoch {epoch}: loss {loss.item():.3f}, val_acc {acc:.3f}")
        if epoch == 2:
            save_file(model.state_dict(), "lenet.safetensors")
    torch.save(model.state_dict(), f"epoch{args.epochs}.pt")


if __name__ == "__main__":
    main()
