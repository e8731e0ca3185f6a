"""Hugging Face transformers: track a `Trainer.train` as a run (pip install 'modelhub[hf]').

    from modelhub.integrations.hf import ModelhubTrainerCallback
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val,
                      callbacks=[ModelhubTrainerCallback("experiments", name="minilm-sst2")])
    trainer.train()                                   # commits minilm-sst2@N at the end

Hyperparameters: the TrainingArguments that shape training (learning rate, epochs,
batch size, ...) and the scalar entries of the model's config under ``config.``.
Metrics: every ``logs`` dict the Trainer reports (loss, learning_rate, grad_norm,
eval_* ...) at step = ``state.global_step``. Checkpoints: a snapshot at each of the
Trainer's saves (``save_strategy``) and, with ``snapshot_every_epoch=True``
(the default), at the end of each epoch. Status: finished at the end of training.
The Trainer tells callbacks nothing when training raises: catch the exception and
call ``callback.fail(exc)``, or commit the unfinished run later with
``repo.commit_run(run_id, status="failed")``. Only the main process writes.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from transformers import TrainerCallback

from ..repo.commit import LATEST
from .common import hparams_from, model_name, open_target, scalars

_ARGS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
         "gradient_accumulation_steps", "weight_decay", "warmup_steps", "warmup_ratio", "lr_scheduler_type",
         "optim", "seed", "max_grad_norm", "adam_beta1", "adam_beta2", "adam_epsilon", "label_smoothing_factor")


class ModelhubTrainerCallback(TrainerCallback):
    def __init__(self, repo=None, name: str | None = None, *, hparams: Mapping[str, Any] | None = None,
                 parent: str | Sequence[str] | None = LATEST, message: str | None = None,
                 snapshot_every_epoch: bool = True) -> None:
        self._repo_arg = repo
        self.name = name
        self.extra_hparams = dict(hparams or {})
        self.parent = parent
        self.message = message
        self.snapshot_every_epoch = snapshot_every_epoch
        self.run = None
        self.version = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero or model is None:
            return
        repo = open_target(self._repo_arg)
        settings = {k: v for k, v in args.to_dict().items() if k in _ARGS}
        config = getattr(model, "config", None)
        config_values = config.to_dict() if config is not None and hasattr(config, "to_dict") else {}
        config_scalars = {k: v for k, v in config_values.items() if isinstance(v, (bool, int, float, str))}
        hparams = {**hparams_from(settings), **hparams_from(config_scalars, "config."), **self.extra_hparams}
        name = self.name or model_name(config_values.get("_name_or_path", "").rstrip("/").rsplit("/", 1)[-1]
                                       or type(model).__name__)
        self.run = repo.run(name, hparams=hparams, parent=self.parent, model=model, message=self.message)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.run is not None and logs:
            values = scalars(logs)
            if values:
                self.run.log(step=state.global_step, **values)

    def on_save(self, args, state, control, model=None, **kwargs):
        if self.run is not None and model is not None:
            self.run.snapshot(model, step=state.global_step, label=f"checkpoint-{state.global_step}")

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if self.run is not None and model is not None and self.snapshot_every_epoch:
            self.run.snapshot(model, step=state.global_step, label=f"epoch {round(state.epoch or 0)}")

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.run is not None:
            run, self.run = self.run, None
            self.version = run.finish()

    def fail(self, exception: BaseException | str):
        """End the run as failed (the Trainer does not tell callbacks when training raises)."""
        if self.run is not None:
            run, self.run = self.run, None
            self.version = run.fail(exception)
        return self.version
