"""Nautilus-style model selection over a growing labeled dataset (issue 5).

A CNN backbone pre-trained here (on rotated digits, so nothing is downloaded)
is adapted to sklearn's digits (upsampled to 32x32) by >= 8 candidates: heads
of different shapes on the frozen backbone, fine-tuning the last 1 or 2
blocks, several learning rates. Three labeling cycles each add records and
re-run the selection. Four ways to do the same work are timed side by side:

  current      every candidate from its initial weights on all data every cycle,
               full forward through the frozen layers every step (plain PyTorch)
  engine       modelhub.engine.run_selection: planner-chosen materialization,
               reuse across cycles (only new records pass the prefix), fusion
  all_layers   the engine forced to materialize every prefix layer
  lower_bound  frozen-prefix work once per new record (one in-memory pass) plus
               the trainable work alone (heads/blocks trained on in-memory features)

Prints one JSON object. `--quick` shrinks the workload for a smoke run.
Ratios use the CPU seconds of this process with one torch thread (the default):
other processes on a shared machine barely move them; wall seconds are reported too.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from modelhub.engine.config import build_config
from modelhub.engine.data import DataView
from modelhub.engine.features import FeatureStore
from modelhub.engine.selection import CandidateModel, run_selection


def load_digits_32() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    return x.numpy(), d.target.astype(np.int64)


def make_backbone() -> nn.Sequential:
    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())
    return nn.Sequential(OrderedDict(
        stem=block(1, 24), b1=block(24, 32), p1=nn.MaxPool2d(2),
        b2=block(32, 64), p2=nn.MaxPool2d(2),
        b3=block(64, 64), p3=nn.MaxPool2d(2),
        b4=block(64, 96), pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten()))


def pretrain(x: np.ndarray, y: np.ndarray, epochs: int) -> nn.Sequential:
    """A source task: rotated digits. The backbone then transfers to upright ones."""
    torch.manual_seed(0)
    bb = make_backbone()
    model = nn.Sequential(bb, nn.Linear(96, 10))
    xs = torch.from_numpy(np.rot90(x, 1, axes=(2, 3)).copy())
    ys = torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xs), generator=gen).split(64):
            loss = F.cross_entropy(model(xs[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return bb.eval()


def candidates(bb: nn.Sequential, epochs: int) -> list[CandidateModel]:
    specs = []
    for lr in (0.05, 0.01):
        for head_name, hidden in (("linear", 0), ("mlp64", 64), ("mlp256", 256)):
            specs.append((f"{head_name}-lr{lr}", hidden, (), lr))
    specs.append(("ft1-lr0.01", 0, ("backbone.b4",), 0.01))
    specs.append(("ft1-lr0.003", 0, ("backbone.b4",), 0.003))
    specs.append(("ft2-lr0.01", 0, ("backbone.b3", "backbone.b4"), 0.01))
    out = []
    for i, (cid, hidden, tuned, lr) in enumerate(specs):
        torch.manual_seed(1000 + i)
        head = nn.Sequential(nn.Linear(96, 10)) if hidden == 0 else \
            nn.Sequential(nn.Linear(96, hidden), nn.ReLU(), nn.Linear(hidden, 10))
        model = nn.Sequential(OrderedDict(backbone=copy.deepcopy(bb), head=head))
        net = {"backbone": {"lr": 0}, **{t: {"lr": 1} for t in tuned}}
        cfg = build_config({"epochs": epochs, "batch_size": 32, "base_lr": lr, "optimizer": "sgd",
                            "momentum": 0.9, "net": net, "seed": i})
        out.append(CandidateModel(cid, model, cfg))
    return out


def _frozen_leaf_eval(model: nn.Module) -> None:
    model.train()
    for m in model.modules():
        ps = list(m.parameters(recurse=False))
        if ps and not any(p.requires_grad for p in ps):
            m.eval()


def current_practice(cands: list[CandidateModel], data: DataView) -> dict[str, float]:
    """The textbook loop each candidate runs alone: full forward every step."""
    accs = {}
    for c in cands:
        model, cfg = copy.deepcopy(c.model), c.config
        for name, p in model.named_parameters():
            p.requires_grad_(cfg.lr_multiplier(name.rsplit(".", 1)[0]) != 0)
        groups: dict[float, list] = {}
        for name, p in model.named_parameters():
            if p.requires_grad:
                groups.setdefault(cfg.lr_multiplier(name.rsplit(".", 1)[0]), []).append(p)
        opt = torch.optim.SGD([{"params": ps, "lr": cfg.base_lr * m} for m, ps in sorted(groups.items())],
                              lr=cfg.base_lr, momentum=cfg.momentum)
        tr, va = data.split(cfg.val_fraction)
        x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
        gen = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        for _ in range(cfg.epochs or 1):
            _frozen_leaf_eval(model)
            for idx in torch.randperm(len(tr), generator=gen).split(cfg.batch_size):
                rows = torch.from_numpy(tr)[idx]
                loss = F.cross_entropy(model(x[rows]), y[rows])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            model.eval()   # per-epoch validation, as the engine records a metric series
            with torch.no_grad():
                accs[c.cid] = float((model(x[va]).argmax(1) == y[va]).float().mean())
    return accs


def lower_bound(cands: list[CandidateModel], data: DataView, cache: dict, new_from: int) -> dict[str, float]:
    """Prefix work once per new record (one staged in-memory pass) + trainable work alone."""
    bb = cands[0].model.backbone.eval()
    stages = list(bb.children())
    cut = {"head": len(stages), "ft1": 7, "ft2": 5}   # b4 starts at index 7, b3 at index 5
    with torch.no_grad():
        x = torch.from_numpy(data.x[new_from:])
        outs = {}
        for i, s in enumerate(stages):
            x = s(x)
            for k, c in cut.items():
                if i + 1 == c:
                    outs[k] = x
    for k, v in outs.items():
        cache[k] = v if k not in cache else torch.cat([cache[k], v])
    accs = {}
    for c in cands:
        kind = "ft2" if c.cid.startswith("ft2") else "ft1" if c.cid.startswith("ft1") else "head"
        model, cfg = copy.deepcopy(c.model), c.config
        suffix = nn.Sequential(*list(model.backbone.children())[cut[kind]:], model.head)
        params = [p for p in suffix.parameters()]
        opt = torch.optim.SGD(params, lr=cfg.base_lr, momentum=cfg.momentum)
        tr, va = data.split(cfg.val_fraction)
        feats, y = cache[kind], torch.from_numpy(data.y)
        gen = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        ftr, ytr = feats[tr], y[tr]
        for _ in range(cfg.epochs or 1):
            suffix.train()
            for idx in torch.randperm(len(tr), generator=gen).split(cfg.batch_size):
                loss = F.cross_entropy(suffix(ftr[idx]), ytr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            suffix.eval()   # per-epoch validation, as in the other modes
            with torch.no_grad():
                accs[c.cid] = float((suffix(feats[va]).argmax(1) == y[va]).float().mean())
    return accs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller workload (smoke run)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: CPU time = work)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, y = load_digits_32()
    epochs = args.epochs or (2 if args.quick else 3)
    n_total = 600 if args.quick else 1200
    cycles = [int(n_total * f) for f in (0.4, 0.7, 1.0)]
    t0 = time.perf_counter()
    bb = pretrain(x[:n_total], y[:n_total], epochs=1 if args.quick else 2)
    pretrain_s = time.perf_counter() - t0
    cands = candidates(bb, epochs)

    tmp = Path(tempfile.mkdtemp(prefix="modelhub-bench-"))
    stores = {"engine": FeatureStore(tmp / "engine"), "all_layers": FeatureStore(tmp / "all")}
    totals = {m: 0.0 for m in ("current", "engine", "all_layers", "lower_bound")}
    wall_totals = dict(totals)
    per_cycle = []
    lb_cache: dict = {}
    try:
        prev = 0
        for cycle, n in enumerate(cycles, start=1):
            data = DataView("digits", cycle, x[:n], y[:n], name="digits")
            row = {"cycle": cycle, "records": n, "seconds": {}, "wall_seconds": {}, "winner": {}}
            accs = {}

            def timed(mode, fn):
                w, c = time.perf_counter(), time.process_time()
                out = fn()
                row["seconds"][mode] = time.process_time() - c
                row["wall_seconds"][mode] = time.perf_counter() - w
                return out
            accs["current"] = timed("current", lambda: current_practice(cands, data))
            for mode, mat in (("engine", "auto"), ("all_layers", "all")):
                res = timed(mode, lambda: run_selection(cands, data, store=stores[mode], materialize=mat))
                accs[mode] = {o.cid: o.metrics["val_accuracy"] for o in res.outcomes}
                if mode == "engine":
                    row["engine_reuse"] = {"materialized_nodes": len(res.reuse.materialized),
                                           "records_extracted": res.reuse.records_extracted,
                                           "records_preexisting": res.reuse.records_preexisting,
                                           "fused_groups": list(res.reuse.fused_groups)}
            accs["lower_bound"] = timed("lower_bound", lambda: lower_bound(cands, data, lb_cache, prev))
            for mode, a in accs.items():
                best = max(a, key=lambda k: (a[k], k))
                row["winner"][mode] = {"candidate": best, "val_accuracy": round(a[best], 4)}
                totals[mode] += row["seconds"][mode]
                wall_totals[mode] += row["wall_seconds"][mode]
            row["max_accuracy_gap_vs_current"] = round(max(
                abs(accs[m][c] - accs["current"][c]) for m in accs for c in accs[m]), 4)
            row["seconds"] = {k: round(v, 3) for k, v in row["seconds"].items()}
            row["wall_seconds"] = {k: round(v, 3) for k, v in row["wall_seconds"].items()}
            per_cycle.append(row)
            prev = n
        disk = {m: s.bytes_used() for m, s in stores.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    winners_match = all(len({(r["winner"][m]["candidate"], r["winner"][m]["val_accuracy"])
                             for m in r["winner"]}) == 1 for r in per_cycle)
    report = {
        "benchmark": "model_selection", "quick": args.quick, "threads": torch.get_num_threads(),
        "backbone": "CNN pre-trained here on rotated digits (efficientnet-lite0 package not used)",
        "candidates": len(cands), "epochs": epochs, "cycles": cycles, "pretrain_s": round(pretrain_s, 2),
        "timing": "process CPU seconds (ratios) and wall seconds",
        "total_s": {k: round(v, 3) for k, v in totals.items()},
        "total_wall_s": {k: round(v, 3) for k, v in wall_totals.items()},
        "speedup_engine_vs_current": round(totals["current"] / totals["engine"], 2),
        "speedup_all_layers_vs_current": round(totals["current"] / totals["all_layers"], 2),
        "engine_vs_lower_bound": round(totals["engine"] / totals["lower_bound"], 3),
        "all_layers_vs_lower_bound": round(totals["all_layers"] / totals["lower_bound"], 3),
        "disk_bytes": disk,
        "winners_match": winners_match,
        "per_cycle": per_cycle,
        "targets": {"speedup_vs_current": ">= 5", "ratio_to_lower_bound": "<= 1.3"},
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
