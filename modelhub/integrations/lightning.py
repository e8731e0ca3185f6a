"""PyTorch Lightning: track a `Trainer.fit` as a run (pip install 'modelhub[lightning]').

    from modelhub.integrations.lightning import ModelhubCallback
    trainer = L.Trainer(max_epochs=10, callbacks=[ModelhubCallback("experiments", name="mnist-cnn")])
    trainer.fit(model, train_loader, val_loader)      # commits mnist-cnn@N at the end

Hyperparameters: the module's ``hparams`` (``self.save_hyperparameters()``) and the
trainer's settings. Metrics: what the module logs with ``self.log`` (the trainer's
callback metrics) at the end of every validation and training epoch, and every
``log_every_n_steps`` optimizer steps if set, at step = ``trainer.global_step``.
Checkpoints: a snapshot every ``snapshot_every_n_epochs`` epochs. Status: finished at
the end of fit, failed with the exception's message if fit raises. Only the
global-rank-0 process writes.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import lightning.pytorch as pl

from ..repo.commit import LATEST
from .common import hparams_from, model_name, open_target, scalars

_TRAINER_SETTINGS = ("max_epochs", "max_steps", "accumulate_grad_batches", "gradient_clip_val", "precision",
                     "check_val_every_n_epoch")


class ModelhubCallback(pl.Callback):
    def __init__(self, repo=None, name: str | None = None, *, hparams: Mapping[str, Any] | None = None,
                 parent: str | Sequence[str] | None = LATEST, message: str | None = None,
                 snapshot_every_n_epochs: int = 1, log_every_n_steps: int | None = None) -> None:
        super().__init__()
        if snapshot_every_n_epochs < 0:
            raise ValueError("snapshot_every_n_epochs must be 0 (final weights only) or more")
        self._repo_arg = repo
        self.name = name
        self.extra_hparams = dict(hparams or {})
        self.parent = parent
        self.message = message
        self.snapshot_every_n_epochs = snapshot_every_n_epochs
        self.log_every_n_steps = log_every_n_steps
        self.run = None          # the modelhub Run while fitting
        self.version = None      # the version committed at the end

    # -- start and end ---------------------------------------------------------------------
    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.global_rank != 0:
            return
        repo = open_target(self._repo_arg)
        settings = {k: getattr(trainer, k, None) for k in _TRAINER_SETTINGS}
        hparams = {**hparams_from(dict(pl_module.hparams)), **hparams_from(settings, "trainer."),
                   **self.extra_hparams}
        self.run = repo.run(self.name or model_name(type(pl_module).__name__), hparams=hparams,
                            parent=self.parent, model=pl_module, message=self.message)

    def on_fit_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self.run is not None:
            self._log(trainer)
            self.version = self.run.finish()
            self.run = None

    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        if self.run is not None:
            run, self.run = self.run, None
            self.version = run.fail(exception)

    # -- metrics and checkpoints -----------------------------------------------------------
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.run is not None and self.log_every_n_steps and trainer.global_step % self.log_every_n_steps == 0:
            self._log(trainer)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.run is not None and not trainer.sanity_checking:
            self._log(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.run is None:
            return
        self._log(trainer)
        epoch = trainer.current_epoch
        if self.snapshot_every_n_epochs and (epoch + 1) % self.snapshot_every_n_epochs == 0:
            self.run.snapshot(pl_module, step=trainer.global_step, label=f"epoch {epoch}")

    def _log(self, trainer) -> None:
        values = scalars(trainer.callback_metrics)
        if values:
            self.run.log(step=trainer.global_step, **values, epoch=float(trainer.current_epoch))
