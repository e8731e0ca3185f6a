"""Soak: crash injection and bad-input fuzzing campaigns, with a JSON tally.

    python benchmarks/soak.py [--trials 200] [--fuzz 500] [--quick]

* crash trials: SIGKILL a child running commit / add / gc / archive / data add
  at a random moment, then check that the repository opens, fsck
  finds no error, every earlier version is bit-exact and the interrupted
  operation happened entirely or not at all;
* fuzzed inputs: mangled safetensors/.pt files and random command lines,
  each of which must end in a ModelhubError (one line) or succeed.
`failures` must be 0.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
from safetensors.torch import save as st_save  # noqa: E402

import modelhub  # noqa: E402
from crashlib import OPS, Zygote, dataset_state, op_commit, snapshot_versions, verify_after_crash  # noqa: E402
from modelhub.cli import main as dlv  # noqa: E402
from modelhub.errors import ModelhubError  # noqa: E402
from modelhub.tensorio import load_weights_file  # noqa: E402


def crash_campaign(trials: int, rng: random.Random) -> dict:
    ops = [op for op in ("commit", "add", "gc", "archive", "data_add") if op in OPS]
    tally = {"trials": 0, "kills_injected": 0, "versions_verified": 0, "failures": 0, "failure_details": []}
    zygote = Zygote()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "repo"
            repo = modelhub.init_repo(root)
            for seed in (10_000, 10_001):
                op_commit(str(root), seed)
            before = snapshot_versions(repo)
            durations = {}
            for op in ops:
                calib = zygote.run(op, root, 0, kill_after=None)
                durations[op] = calib.duration_s
                before = verify_after_crash(root, before, calib)
            for i in range(trials):
                op = ops[i % len(ops)]
                if op == "gc":
                    for j in range(10):
                        repo.store.put(os.urandom(4000) + i.to_bytes(4, "little") + bytes([j]))
                data_before = dataset_state(repo)
                trial = zygote.run(op, root, i + 1, kill_after=rng.uniform(0, durations[op]))
                tally["trials"] += 1
                tally["kills_injected"] += int(trial.killed)
                try:
                    before = verify_after_crash(root, before, trial, data_before)
                    tally["versions_verified"] += len(before)
                except AssertionError as exc:
                    tally["failures"] += 1
                    tally["failure_details"].append(f"{op} seed {i + 1}: {exc}")
                    before = snapshot_versions(modelhub.open_repo(root))
    finally:
        zygote.close()
    return tally


def fuzz_campaign(n: int, rng: random.Random) -> dict:
    state = {"w": torch.randn(8, 8), "b": torch.arange(4)}
    buf = io.BytesIO()
    torch.save(state, buf)
    seeds = {".safetensors": st_save(state), ".pt": buf.getvalue()}
    tally = {"inputs_fuzzed": 0, "refused_cleanly": 0, "accepted": 0, "failures": 0, "failure_details": []}
    words = ["commit", "log", "desc", "diff", "stats", "fsck", "-m", "--name", "--weights", "net", "net@1", "net@9",
             "x=1", "--json", "@", "", "--hparam", "lr", "select m where", "query"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        repo = modelhub.init_repo(tmp / "r")
        repo.commit(state, name="net", message="base")
        for i in range(n):
            tally["inputs_fuzzed"] += 1
            try:
                if i % 2 == 0:
                    suffix = rng.choice(list(seeds))
                    data = bytearray(seeds[suffix][: rng.randint(0, len(seeds[suffix]))])
                    for _ in range(rng.randint(0, 4)):
                        if data:
                            data[rng.randrange(len(data))] ^= rng.randint(1, 255)
                    path = tmp / f"f{i}{suffix}"
                    path.write_bytes(bytes(data))
                    try:
                        load_weights_file(path)
                        tally["accepted"] += 1
                    except ModelhubError as exc:
                        assert "\n" not in str(exc)
                        tally["refused_cleanly"] += 1
                else:
                    argv = [rng.choice(words) for _ in range(rng.randint(0, 5))] + ["--repo", str(repo.root)]
                    out, err = io.StringIO(), io.StringIO()
                    code = dlv(argv, out=out, err=err)
                    assert "Traceback" not in err.getvalue()
                    tally["accepted" if code == 0 else "refused_cleanly"] += 1
            except Exception as exc:  # noqa: BLE001 - any other exception is a finding
                tally["failures"] += 1
                tally["failure_details"].append(f"input {i}: {type(exc).__name__}: {exc}")
    return tally


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--fuzz", type=int, default=500)
    ap.add_argument("--quick", action="store_true", help="20 crash trials, 100 fuzzed inputs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.quick:
        args.trials, args.fuzz = 20, 100
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    crash = crash_campaign(args.trials, rng)
    fuzz = fuzz_campaign(args.fuzz, rng)
    result = {
        "benchmark": "soak",
        "trials_run": crash["trials"],
        "kills_injected": crash["kills_injected"],
        "versions_verified": crash["versions_verified"],
        "inputs_fuzzed": fuzz["inputs_fuzzed"],
        "inputs_refused_cleanly": fuzz["refused_cleanly"],
        "failures": crash["failures"] + fuzz["failures"],
        "failure_details": (crash["failure_details"] + fuzz["failure_details"])[:20],
        "operations": [op for op in ("commit", "add", "gc", "archive", "data_add") if op in OPS],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    sys.exit(1 if result["failures"] else 0)


if __name__ == "__main__":
    main()
