"""Soak: crash injection and bad-input fuzzing campaigns, with a JSON tally.

    python benchmarks/soak.py [--trials 500] [--fuzz 500] [--disk 60] [--corrupt 60] [--quick]

* crash trials: SIGKILL a child running commit / add / gc / archive / data add
  at a random moment, then check that the repository opens, fsck
  finds no error, every earlier version is bit-exact and the interrupted
  operation happened entirely or not at all;
* fuzzed inputs: mangled safetensors/.pt files and random command lines,
  each of which must end in a ModelhubError (one line) or succeed;
* full disk: ENOSPC injected at the k-th blob write (os.fsync) or in DuckDB's
  checkpoint during commit / data add: a reported success must have landed,
  a reported failure must be a one-line DiskFullError and leave nothing;
* corrupt catalog: a byte flipped at a random offset of catalog.duckdb; fsck,
  log, commit and `fsck --restore-catalog` must answer in one line (no
  traceback), and when fsck passes a commit must succeed;
* races: a gc with the default grace period runs between a `data add`'s blob
  writes and its transaction, reusing old orphan blobs; nothing may be lost;
* hostile remote: blobs swapped for 1 GiB sparse files; the pull must be
  refused without reading them (peak memory is reported).
`failures` must be 0; `peak_rss_mb` is the process's peak resident memory.
"""
from __future__ import annotations

import argparse
import errno
import io
import json
import os
import random
import resource
import shutil
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


def _tally() -> dict:
    return {"trials": 0, "failures": 0, "failure_details": []}


def _fail(tally: dict, text: str) -> None:
    tally["failures"] += 1
    tally["failure_details"].append(text)


def disk_full_campaign(n: int, rng: random.Random) -> dict:
    import duckdb
    import numpy as np
    from modelhub.catalog import db as catalog_db
    from modelhub.errors import DiskFullError
    from modelhub.storage import atomic
    tally = _tally() | {"reported_failed": 0, "reported_committed": 0}
    real_fsync, real_checkpoint = atomic.os.fsync, catalog_db._ScopeConnection.checkpoint
    with tempfile.TemporaryDirectory() as tmp:
        repo = modelhub.init_repo(Path(tmp) / "r")
        for i in range(n):
            tally["trials"] += 1
            where = rng.choice(["blob", "checkpoint"])
            k, calls = rng.randint(1, 8), {"n": 0}

            def fsync(fd):
                calls["n"] += 1
                if calls["n"] >= k:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return real_fsync(fd)

            def checkpoint(self):
                raise duckdb.IOException("IO Error: Could not write file: No space left on device")

            n_before = len(repo.log()) + len(repo.datasets())
            if where == "blob":
                atomic.os.fsync = fsync
            else:
                catalog_db._ScopeConnection.checkpoint = checkpoint
            outcome = "committed"
            try:
                if i % 2:
                    repo.commit({"w": torch.randn(64), "b": torch.randn(8)}, name=f"m{i % 3}", message=f"t{i}")
                else:
                    path = Path(tmp) / f"d{i}.npz"
                    np.savez(path, x=np.random.default_rng(i).standard_normal((8, 4)).astype(np.float32),
                             y=np.arange(8))
                    repo.data_add(f"d{i}", [path])
            except DiskFullError as exc:
                outcome = "failed"
                if "\n" in str(exc):
                    _fail(tally, f"trial {i}: multi-line message")
            except Exception as exc:  # noqa: BLE001 - anything else is a finding
                outcome = "crashed"
                _fail(tally, f"trial {i} ({where}): {type(exc).__name__}: {str(exc)[:120]}")
            finally:
                atomic.os.fsync, catalog_db._ScopeConnection.checkpoint = real_fsync, real_checkpoint
            tally["reported_" + ("committed" if outcome == "committed" else "failed")] += 1
            n_after = len(repo.log()) + len(repo.datasets())
            if outcome == "committed" and n_after != n_before + 1 or outcome == "failed" and n_after != n_before:
                _fail(tally, f"trial {i} ({where}): reported {outcome} but {n_after - n_before} objects appeared")
            if not repo.fsck().ok:
                _fail(tally, f"trial {i} ({where}): fsck found errors")
    return tally


def corrupt_catalog_campaign(n: int, rng: random.Random) -> dict:
    from safetensors.torch import save_file
    tally = _tally() | {"detected_by_fsck": 0, "restored": 0}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = tmp / "base"
        os.environ["DLV_CATALOG_BACKUP_INTERVAL"] = "0"
        try:
            repo = modelhub.init_repo(base)
            for s in range(3):
                repo.commit({"w": torch.randn(50), "b": torch.randn(5)}, name="m", message=f"v{s}")
        finally:
            del os.environ["DLV_CATALOG_BACKUP_INTERVAL"]
        save_file({"w": torch.randn(50), "b": torch.randn(5)}, str(tmp / "w.safetensors"))
        size = (base / ".dlv" / "catalog.duckdb").stat().st_size
        for i in range(n):
            tally["trials"] += 1
            work = tmp / "w"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(base, work)
            cat = work / ".dlv" / "catalog.duckdb"
            data = bytearray(cat.read_bytes())
            data[rng.randrange(size)] ^= rng.randint(1, 255)
            cat.write_bytes(bytes(data))
            codes = []
            for argv in (["fsck"], ["log"], ["commit", "-m", "x", "--name", "m", "--weights", str(tmp / "w.safetensors")],
                         ["fsck", "--restore-catalog"], ["log"]):
                out, err = io.StringIO(), io.StringIO()
                try:
                    code = dlv(argv + ["--repo", str(work)], out=out, err=err)
                except Exception as exc:  # noqa: BLE001 - a traceback is a finding
                    _fail(tally, f"trial {i} {argv[0]}: {type(exc).__name__}: {str(exc)[:120]}")
                    code = -1
                if code not in (0, -1) and err.getvalue().count("\n") != 1:
                    _fail(tally, f"trial {i} {argv[0]}: not one line: {err.getvalue()[:200]!r}")
                codes.append(code)
            tally["detected_by_fsck"] += int(codes[0] == 65)
            tally["restored"] += int(codes[3] == 0)
            if codes[0] == 0 and codes[2] != 0:
                _fail(tally, f"trial {i}: fsck passed but commit failed ({codes[2]})")
            if codes[3] != 0 or codes[4] != 0:
                _fail(tally, f"trial {i}: not restored (backups exist): codes {codes}")
    return tally


def race_campaign(n: int) -> dict:
    import numpy as np
    tally = _tally()
    with tempfile.TemporaryDirectory() as tmp:
        repo = modelhub.init_repo(Path(tmp) / "r")
        real_write = repo.catalog.write
        for i in range(n):
            tally["trials"] += 1
            path = Path(tmp) / f"d{i}.npz"
            np.savez(path, x=np.full((4, 3), i, np.float32), y=np.arange(4))

            def killed(*a, **k):
                raise KeyboardInterrupt

            repo.catalog.write = killed      # an earlier add killed after its blobs
            try:
                repo.data_add(f"d{i}", [path])
            except KeyboardInterrupt:
                pass
            old = time.time() - 7200
            for blob in repo.store:
                os.utime(repo.store.path_of(blob), (old, old))

            def gc_between(*a, **k):
                repo.catalog.write = real_write
                repo.gc()                    # default grace, between the blobs and the rows
                return real_write(*a, **k)

            repo.catalog.write = gc_between
            try:
                repo.data_add(f"d{i}", [path])
            finally:
                repo.catalog.write = real_write
            if not repo.fsck().ok or repo.dataset(f"d{i}").n != 4:
                _fail(tally, f"trial {i}: the dataset lost a blob to gc")
    return tally


def hostile_remote_campaign(n: int) -> dict:
    from modelhub.errors import IntegrityError
    from modelhub.remote import open_remote, publish, pull
    from modelhub.remote.transport import blob_path
    tally = _tally()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        a = modelhub.init_repo(tmp / "a")
        a.commit({"w": torch.randn(1000)}, name="m", message="x")
        publish(a, open_remote(a, str(tmp / "hub")))
        for blob in a.store:
            with open(tmp / "hub" / blob_path(blob), "r+b") as fh:
                fh.truncate(1 << 30)   # sparse 1 GiB
        for i in range(n):
            tally["trials"] += 1
            b = modelhub.init_repo(tmp / f"b{i}")
            try:
                pull(b, open_remote(b, str(tmp / "hub")), "m")
                _fail(tally, f"trial {i}: a swapped blob was accepted")
            except IntegrityError:
                pass
    return tally


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=500)
    ap.add_argument("--fuzz", type=int, default=500)
    ap.add_argument("--disk", type=int, default=60, help="full-disk trials")
    ap.add_argument("--corrupt", type=int, default=60, help="corrupt-catalog trials")
    ap.add_argument("--races", type=int, default=20, help="gc-vs-writer race trials")
    ap.add_argument("--quick", action="store_true", help="20 crash trials, 100 fuzzed inputs, 10 of each other kind")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.quick:
        args.trials, args.fuzz, args.disk, args.corrupt, args.races = 20, 100, 10, 10, 5
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    crash = crash_campaign(args.trials, rng)
    fuzz = fuzz_campaign(args.fuzz, rng)
    extra = {
        "full_disk": disk_full_campaign(args.disk, rng),
        "corrupt_catalog": corrupt_catalog_campaign(args.corrupt, rng),
        "races": race_campaign(args.races),
        "hostile_remote": hostile_remote_campaign(3),
    }
    result = {
        "benchmark": "soak",
        "trials_run": crash["trials"],
        "kills_injected": crash["kills_injected"],
        "versions_verified": crash["versions_verified"],
        "inputs_fuzzed": fuzz["inputs_fuzzed"],
        "inputs_refused_cleanly": fuzz["refused_cleanly"],
        "campaigns": {k: {x: v[x] for x in v if x != "failure_details"} for k, v in extra.items()},
        "failures": crash["failures"] + fuzz["failures"] + sum(v["failures"] for v in extra.values()),
        "failure_details": (crash["failure_details"] + fuzz["failure_details"]
                            + [d for v in extra.values() for d in v["failure_details"]])[:20],
        "operations": [op for op in ("commit", "add", "gc", "archive", "data_add") if op in OPS],
        # ru_maxrss is KiB on Linux: the hostile-remote pulls must not read the 1 GiB blobs
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    json.dump(result, sys.stdout, indent=2)
    print()
    sys.exit(1 if result["failures"] else 0)


if __name__ == "__main__":
    main()
