"""Training the trainable suffix of each candidate on prefix features.

Every candidate owns its optimizer, batch size, shuffling generator and RNG
state (saved and restored around its steps), so candidates fused into one
pass over the data train exactly as they would alone.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from .chain import Stage, run_stages
from .config import EvalConfig


def lower_is_better(metric: str) -> bool:
    return "loss" in metric or "error" in metric


def metric_name(metric: str) -> str:
    """Keep-rule metric names: 'loss' and 'accuracy' mean the validation ones."""
    return {"loss": "val_loss", "accuracy": "val_accuracy", "acc": "val_accuracy"}.get(metric, metric)


def loss_fn(cfg: EvalConfig) -> nn.Module:
    return nn.CrossEntropyLoss() if cfg.loss == "cross_entropy" else nn.MSELoss()


def make_optimizer(cfg: EvalConfig, groups: list[dict]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.base_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.base_lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.base_lr, weight_decay=cfg.weight_decay)


def layer_of(param_name: str) -> str:
    """The layer a parameter belongs to (``fc1`` of ``fc1.weight``): what lr rules match."""
    return param_name.rsplit(".", 1)[0] if "." in param_name else param_name


def param_groups(stages: list[Stage], cfg: EvalConfig) -> list[dict]:
    """One optimizer group per distinct multiplier; lr-0 parameters are frozen (no grad)."""
    by_mult: dict[float, list[nn.Parameter]] = {}
    for name, p in (np_ for s in stages for np_ in s.named_parameters()):
        mult = cfg.lr_multiplier(layer_of(name))
        if mult == 0:
            p.requires_grad_(False)
        else:
            p.requires_grad_(True)
            by_mult.setdefault(mult, []).append(p)
    return [{"params": ps, "lr": cfg.base_lr * m} for m, ps in sorted(by_mult.items())]


def frozen_layers(model: nn.Module, cfg: EvalConfig) -> frozenset[str]:
    """Names of the network's modules that run in eval mode while it trains: every module whose
    parameters all have lr 0 (a frozen layer or a whole frozen block), and every parameter-free
    module (dropout, batch norm without weights) whose nearest enclosing module with parameters
    is frozen -- a frozen block's own dropouts are part of the frozen block, as after a user's
    ``model.encoder.eval()``. A parameter-free module whose enclosing module still trains (the
    dropout before a head) keeps training-mode behaviour."""
    frozen: dict[str, bool] = {}
    for name, m in model.named_modules():
        params = [n for n, _ in m.named_parameters(prefix=name)]
        if params:
            frozen[name] = all(cfg.lr_multiplier(layer_of(n)) == 0 for n in params)
    out = set()
    for name, _ in model.named_modules():
        enclosing = name
        while enclosing not in frozen and enclosing:
            enclosing = enclosing.rpartition(".")[0]
        if frozen.get(enclosing, False):
            out.add(name)
    return frozenset(out)


def stage_layers(stage: Stage) -> list[tuple[str, nn.Module]]:
    """(network name, module) of every module inside a stage."""
    out = []
    for name, m in stage.layers.named_modules():
        full = stage.param_prefix + name if name else stage.param_prefix.rstrip(".")
        out.append((full, m))
    return out


def set_modes(stages: list[Stage], frozen: frozenset[str] = frozenset()) -> None:
    """Training mode, except leaf layers whose parameters are all frozen and the modules
    ``frozen`` names (see frozen_layers), which run in eval mode."""
    for s in stages:
        s.module.train()
        for name, m in stage_layers(s):
            params = list(m.parameters(recurse=False))
            if name in frozen or (params and not any(p.requires_grad for p in params)):
                m.eval()


def uses_channels_last(stages: list[Stage], cfg: EvalConfig, device: torch.device) -> bool:
    """``auto``: channels-last on CPU when the trainable layers have 2-D convolutions. oneDNN's
    backward of depthwise convolutions ran 1.6-5x faster in that layout than in the
    default one (EfficientNet-style blocks spend most of a step there); results agree to
    float rounding, not bit for bit, so ``contiguous`` stays available."""
    if cfg.memory_format != "auto":
        return cfg.memory_format == "channels_last"
    return device.type == "cpu" and any(isinstance(m, nn.Conv2d) for s in stages for m in s.module.modules())


@dataclass
class CandidateTrainer:
    cid: str
    suffix: list[Stage]
    cfg: EvalConfig
    n_train: int
    device: torch.device
    frozen: frozenset[str] = frozenset()    # modules in eval mode while training (frozen_layers)
    step: int = 0
    epoch: int = 0
    series: list[tuple[str, int, float]] = field(default_factory=list)
    # (step, {id(tensor): copy}) of the trainable stages at each epoch end; the
    # committed version keeps them as snapshots (frozen tensors dedupe to nothing)
    snapshots: list[tuple[int, dict[int, torch.Tensor]]] = field(default_factory=list)
    _pos: int = 0
    _perm: torch.Tensor | None = None
    _loss_sum: float = 0.0
    _loss_n: int = 0
    step_seconds: float = 0.0       # wall time inside optimizer steps (forward, backward, update)

    def __post_init__(self) -> None:
        self.channels_last = uses_channels_last(self.suffix, self.cfg, self.device)
        for s in self.suffix:
            s.module.to(self.device)
            if self.channels_last:
                s.module.to(memory_format=torch.channels_last)
        groups = param_groups(self.suffix, self.cfg)
        self.optimizer = make_optimizer(self.cfg, groups) if groups else None
        self.loss = loss_fn(self.cfg)
        self.shuffle = torch.Generator().manual_seed(self.cfg.seed)
        with torch.random.fork_rng(devices=self._rng_devices):
            torch.manual_seed(self.cfg.seed)           # seeds the CPU and every CUDA generator
            self._rng = torch.get_rng_state()
            self._cuda_rng = torch.cuda.get_rng_state(self.device) if self._rng_devices else None
        steps_per_epoch = math.ceil(self.n_train / self.cfg.batch_size)
        self.total_steps = self.cfg.iterations or (self.cfg.epochs or 1) * steps_per_epoch

    @property
    def _rng_devices(self) -> list[torch.device]:
        """The generators a step draws from besides the CPU's: on a GPU, dropout in the trainable
        layers draws from the device's generator, which must be saved and restored per candidate
        just like the CPU's, or fused candidates would not train as they do alone."""
        return [self.device] if self.device.type == "cuda" else []

    @property
    def done(self) -> bool:
        return self.step >= self.total_steps

    def train_round(self, feats: torch.Tensor, labels: torch.Tensor, stop_at: int | None,
                    val: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """Train until the end of the current epoch, the last step, or ``stop_at``.

        ``feats`` and ``labels`` may already live on the training device (GroupFeatures keeps
        them there when they fit): then a step copies nothing from the host and never waits
        for the device. The running loss is summed on the device, in float64 and in the same
        order as a host-side sum, and read once per round, not once per step."""
        limit = self.total_steps if stop_at is None else min(stop_at, self.total_steps)
        set_modes(self.suffix, self.frozen)
        bs = self.cfg.batch_size
        on = feats.device
        perm_on = self._perm.to(on) if self._perm is not None else None
        loss_sum = torch.tensor(self._loss_sum, dtype=torch.float64, device=self.device)
        t0 = time.perf_counter()
        outside = 0.0       # seconds spent in epoch ends (snapshots, validation), not in steps
        with torch.random.fork_rng(devices=self._rng_devices):
            torch.set_rng_state(self._rng)
            if self._rng_devices:
                torch.cuda.set_rng_state(self._cuda_rng, self.device)
            while self.step < limit:
                if self._perm is None:
                    self._perm = torch.randperm(self.n_train, generator=self.shuffle)
                    perm_on = self._perm.to(on)
                    self._pos = 0
                idx = perm_on[self._pos:self._pos + bs]
                x = feats[idx].to(self.device)
                if self.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = labels[idx.to(labels.device)].to(self.device)
                out = run_stages(self.suffix, x)
                loss = self.loss(out, y)
                if self.optimizer is not None:
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    self.optimizer.step()
                loss_sum = loss_sum + loss.detach().double() * len(idx)
                self._loss_n += len(idx)
                self.step += 1
                self._pos += bs
                if self._pos >= self.n_train:
                    self._loss_sum = float(loss_sum)        # waits for the device
                    t1 = time.perf_counter()
                    self._end_epoch(val)
                    outside += time.perf_counter() - t1
                    loss_sum = torch.tensor(self._loss_sum, dtype=torch.float64, device=self.device)
                    break
            self._rng = torch.get_rng_state()
            if self._rng_devices:
                self._cuda_rng = torch.cuda.get_rng_state(self.device)
        self._loss_sum = float(loss_sum)                    # waits for the device
        self.step_seconds += time.perf_counter() - t0 - outside
        if self.done and self._perm is not None and val is not None:
            self._end_epoch(val)        # last step mid-epoch (iterations): still report

    def _end_epoch(self, val: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        self._perm = None
        self.epoch += 1
        self.snapshots.append((self.step, {
            id(t): t.detach().to("cpu", copy=True).contiguous()
            for stage in self.suffix for t in (*stage.module.parameters(), *stage.module.buffers())
        }))
        if self._loss_n:
            self.series.append(("train_loss", self.step, self._loss_sum / self._loss_n))
        self._loss_sum, self._loss_n = 0.0, 0
        if val is not None:
            self.record_validation(*val)

    def record_validation(self, feats: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        m = evaluate_stages(self.suffix, feats, labels, self.cfg, self.device)
        if not any(name == "val_loss" and step == self.step for name, step, _ in self.series):
            for k, v in m.items():
                self.series.append((k, self.step, v))
        return m

    def latest(self, metric: str) -> float:
        name = metric_name(metric)
        values = [v for n, _, v in self.series if n == name]
        if not values:
            return math.inf if lower_is_better(name) else -math.inf
        return values[-1]


def evaluate_stages(stages: list[Stage], feats: torch.Tensor, labels: torch.Tensor, cfg: EvalConfig,
                    device: torch.device, batch: int = 1024) -> dict[str, float]:
    """Validation loss (and accuracy for classification), layers in eval mode, restored after."""
    modes = [(m, m.training) for s in stages for m in s.module.modules()]
    for s in stages:
        s.module.eval()
    loss = loss_fn(cfg)
    total, correct, n = 0.0, 0, int(labels.shape[0])
    try:
        with torch.no_grad():
            for i in range(0, n, batch):
                x = feats[i:i + batch].to(device)
                y = labels[i:i + batch].to(device)
                out = run_stages(stages, x)
                total += float(loss(out, y)) * x.shape[0]
                if cfg.loss == "cross_entropy":
                    correct += int((out.argmax(1) == y).sum())
    finally:
        for m, was in modes:
            m.train(was)
    result = {"val_loss": total / max(n, 1)}
    if cfg.loss == "cross_entropy":
        result["val_accuracy"] = correct / max(n, 1)
    return result
