"""Track a PyTorch Lightning fit with ModelhubCallback (pip install 'modelhub[lightning]').

    python examples/train_lightning.py --repo runs-demo
    dlv ui --repo runs-demo
"""
from __future__ import annotations

import argparse
from pathlib import Path

import lightning.pytorch as L
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import modelhub
from modelhub.integrations.lightning import ModelhubCallback


class DigitsClassifier(L.LightningModule):
    def __init__(self, lr: float = 0.05, hidden: int = 64) -> None:
        super().__init__()
        self.save_hyperparameters()          # lr and hidden become the version's hyperparameters
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default="runs-demo")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    root = Path(args.repo)
    repo = modelhub.open_repo(root) if (root / ".dlv").is_dir() else modelhub.init_repo(root)

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    train = DataLoader(TensorDataset(x[:1500], y[:1500]), batch_size=64, shuffle=True)
    val = DataLoader(TensorDataset(x[1500:], y[1500:]), batch_size=256)

    torch.manual_seed(0)
    callback = ModelhubCallback(repo, name="digits-mlp", snapshot_every_n_epochs=1)
    trainer = L.Trainer(max_epochs=args.epochs, callbacks=[callback], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, accelerator="cpu", devices=1)
    trainer.fit(DigitsClassifier(), train, val)
    print(f"committed {callback.version.ref}")


if __name__ == "__main__":
    main()
