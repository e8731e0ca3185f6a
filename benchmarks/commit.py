"""Commit/checkout of a ~20 MB model, and what a fine-tune with frozen layers costs on disk.

Side by side in one run:
  * dlv commit / checkout time  vs  torch.save / torch.load of the same state dict;
  * stored bytes of N fine-tuned versions whose backbone is frozen (only the
    head changes) vs N full torch.save copies (MLflow-style artifacts).

    python benchmarks/commit.py [--quick]
Prints JSON.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import modelhub


def backbone_model(width: int) -> nn.Module:
    # ~20 MB of float32 at width=512: a VGG-ish conv stack plus an MLP head.
    return nn.Sequential(
        nn.Conv2d(3, width // 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width // 4, width // 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width // 2, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(width * 4, width * 3), nn.ReLU(), nn.Linear(width * 3, 10),
    )


def timed(fn, repeat: int = 3):
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller model, fewer versions")
    args = ap.parse_args()
    width, n_finetunes = (256, 3) if args.quick else (512, 5)
    torch.manual_seed(0)
    model = backbone_model(width)
    state = model.state_dict()
    raw_bytes = sum(t.numel() * t.element_size() for t in state.values())

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        repo = modelhub.init_repo(tmp / "repo")
        # Every repetition commits different bits (a training step's worth of
        # change), so deduplication cannot make a repeat look cheaper.
        variants = iter([{k: v + 1e-3 * (i + 1) for k, v in state.items()} for i in range(3)])
        t_commit, _ = timed(lambda: repo.commit(next(variants), name="m", message="bench"))
        t_checkout, ck = timed(lambda: repo.checkout("m@1", rebuild_module=False))
        state = {k: v + 1e-3 for k, v in state.items()}
        assert all(torch.equal(ck.state_dict[k], state[k]) for k in state)

        state = model.state_dict()
        t_save, _ = timed(lambda: torch.save(state, tmp / "full.pt"))
        t_load, _ = timed(lambda: torch.load(tmp / "full.pt", weights_only=True))

        # Fine-tunes: backbone frozen, only the last Linear changes.
        ft_repo = modelhub.init_repo(tmp / "ft")
        ft_repo.commit(model, name="base", message="pre-trained")
        base_stored = ft_repo.stats().stored_bytes
        torch_save_total = 0
        last = max(int(k.split(".")[0]) for k in state)
        head = [k for k in state if k.startswith(f"{last}.")]
        for i in range(n_finetunes):
            tuned = {k: v.clone() for k, v in state.items()}
            for k in head:
                tuned[k] += 0.01 * torch.randn_like(tuned[k])
            ft_repo.commit(tuned, name="base", message=f"fine-tune {i}", parent="base")
            buf = io.BytesIO()
            torch.save(tuned, buf)
            torch_save_total += len(buf.getvalue())
        ft_stored = ft_repo.stats().stored_bytes - base_stored
        head_bytes = sum(state[k].numel() * 4 for k in head)

    result = {
        "benchmark": "commit",
        "model_bytes": raw_bytes,
        "commit_s": round(t_commit, 4),
        "checkout_s": round(t_checkout, 4),
        "torch_save_s": round(t_save, 4),
        "torch_load_s": round(t_load, 4),
        "commit_vs_torch_save": round(t_commit / t_save, 2),
        "checkout_vs_torch_load": round(t_checkout / t_load, 2),
        "commit_MBps": round(raw_bytes / t_commit / 1e6, 1),
        "checkout_MBps": round(raw_bytes / t_checkout / 1e6, 1),
        "finetunes": n_finetunes,
        "finetune_changed_bytes_each": head_bytes,
        "finetune_stored_bytes_total": ft_stored,
        "finetune_torch_save_bytes_total": torch_save_total,
        "finetune_storage_ratio_vs_torch_save": round(torch_save_total / max(ft_stored, 1), 1),
        "stored_per_finetune_over_changed_bytes": round(ft_stored / n_finetunes / head_bytes, 3),
    }
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
