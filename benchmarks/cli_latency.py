"""How long `dlv` takes to answer, as a user pays it (process start included).

Side by side in one run, each command run as a fresh process (what a shell
loop does), against `python -c pass` (the interpreter's own floor):

  * dlv --version, dlv --help                       (no repository)
  * dlv log, dlv list, dlv desc, dlv stats,
    dlv query "select ...", dlv status              (a repository of N versions)
  * dlv checkout (imports torch; for contrast)

    python benchmarks/cli_latency.py [--versions 1000] [--runs 15] [--quick] [--repo PATH]

Prints JSON: p50/p90/min seconds per command, the ratio to `python -c pass`,
and whether torch was imported by that command (checked with `-X importtime`).
Targets (issue 15): dlv --version p50 <= 0.15 s; dlv log p50 <= 0.25 s at
1,000 versions.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def build_repo(root: Path, n_versions: int) -> None:
    """N versions over 10 models, each a tiny state dict with a metric: the
    catalog is what read-only commands pay for, not the weights."""
    import torch

    import modelhub

    repo = modelhub.init_repo(root)
    per_model = max(1, n_versions // 10)
    g = torch.Generator().manual_seed(0)
    done = 0
    for m in range(10):
        for v in range(per_model):
            if done >= n_versions:
                return
            state = {"fc.weight": torch.randn(4, 4, generator=g), "fc.bias": torch.randn(4, generator=g)}
            repo.commit(state, name=f"model{m}", message=f"step {v} of model {m}",
                        hparams={"lr": 0.01 * (v + 1)}, metrics={"val_acc": (v % 97) / 97})
            done += 1


def run_once(argv: list[str], cwd: Path, env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[:400]}")
    return elapsed


def imports_torch(argv: list[str], cwd: Path, env: dict) -> bool:
    """Run once with import profiling on and look for torch among the imports."""
    proc = subprocess.run(argv, cwd=cwd, env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return any(line.startswith("import time:") and line.rsplit("|", 1)[-1].strip() == "torch"
               for line in proc.stderr.splitlines())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="100 versions, 5 runs each")
    ap.add_argument("--repo", type=Path, default=None,
                    help="time an existing repository (e.g. one built by an earlier run) instead of building one; "
                         "it must hold model3 (as built here) for desc/log model3/checkout")
    args = ap.parse_args()
    if args.quick:
        args.versions, args.runs = 100, 5
    # The console script a user runs; `python -m modelhub` where it is not installed.
    script = Path(sys.executable).with_name("dlv")
    dlv = [str(script)] if script.exists() else [sys.executable, "-m", "modelhub"]
    env = dict(os.environ)
    tmp = Path(tempfile.mkdtemp(prefix="dlv-latency-"))
    try:
        t0 = time.perf_counter()
        if args.repo is None:
            build_repo(tmp / "repo", args.versions)
        build_s = time.perf_counter() - t0
        repo = tmp / "repo" if args.repo is None else args.repo.resolve()
        commands = {
            "python -c pass": ([sys.executable, "-c", "pass"], tmp),
            "dlv --version": (dlv + ["--version"], tmp),
            "dlv --help": (dlv + ["--help"], tmp),
            "dlv log": (dlv + ["log"], repo),
            "dlv log model3": (dlv + ["log", "model3"], repo),
            "dlv list": (dlv + ["list"], repo),
            "dlv desc model3": (dlv + ["desc", "model3"], repo),
            "dlv stats": (dlv + ["stats"], repo),
            "dlv query select": (dlv + ["query", "select m where m.metrics['val_acc'] > 0.5 and m.name like 'model%'"],
                                 repo),
            "dlv checkout": (dlv + ["checkout", "model3", "-o", str(tmp / "out.safetensors"), "--force"], repo),
        }
        if (Path(__file__).resolve().parents[1] / "modelhub" / "cli" / "cmd_status.py").exists():
            commands["dlv status"] = (dlv + ["status"], repo)
        results = {}
        # Interleave commands run by run so a burst of background load hits
        # them all alike instead of one command's whole series.
        times: dict[str, list[float]] = {name: [] for name in commands}
        for name, (argv, cwd) in commands.items():
            run_once(argv, cwd, env)  # warm the OS file cache once
        for _ in range(args.runs):
            for name, (argv, cwd) in commands.items():
                times[name].append(run_once(argv, cwd, env))
        floor = statistics.median(times["python -c pass"])
        for name, (argv, cwd) in commands.items():
            ts = sorted(times[name])
            p50 = statistics.median(ts)
            results[name] = {
                "p50_s": round(p50, 4), "p90_s": round(ts[math.ceil(0.9 * len(ts)) - 1], 4), "min_s": round(ts[0], 4),
                "x_python": round(p50 / floor, 2),
                "imports_torch": imports_torch(argv, cwd, env) if name != "python -c pass" else False,
            }
        targets = {
            "dlv --version p50 <= 0.15 s": results["dlv --version"]["p50_s"] <= 0.15,
            f"dlv log p50 <= 0.25 s at {args.versions} versions": results["dlv log"]["p50_s"] <= 0.25,
        }
        print(json.dumps({"versions": args.versions, "runs": args.runs, "build_s": round(build_s, 1),
                          "commands": results, "targets_met": targets}, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
