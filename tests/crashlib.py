"""Crash injection: run repository operations in child processes and SIGKILL them.

A *zygote* process imports torch and modelhub once and forks a fresh child
for every trial (it never runs torch itself, so forking it is safe); the
test kills the child at a random moment inside the operation. After every
kill the caller checks that the repository opens, fsck finds no error,
every earlier version is bit-exact and the interrupted operation happened
entirely or not at all. Used by tests/test_crash.py and benchmarks/soak.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

# -- the operations (run inside forked children) -----------------------------------------------

def trial_state(seed: int, n: int = 6, size: int = 192):
    """A fine-tune of one shared base: small perturbations, so the archive finds deltas worth storing."""
    import torch
    base = torch.Generator().manual_seed(12345)
    g = torch.Generator().manual_seed(seed)
    return {
        f"layer{i}.weight": torch.randn(size, size, generator=base) + 1e-3 * torch.randn(size, size, generator=g)
        for i in range(n)
    }


def op_commit(repo_path: str, seed: int) -> None:
    import modelhub
    repo = modelhub.open_repo(repo_path)
    repo.commit(trial_state(seed), name="crash", message=f"trial {seed}", hparams={"seed": seed})


def op_gc(repo_path: str, seed: int) -> None:
    import modelhub
    modelhub.open_repo(repo_path).gc(grace_s=0.0)


def op_add(repo_path: str, seed: int) -> None:
    import modelhub
    repo = modelhub.open_repo(repo_path)
    f = Path(repo_path) / f"file{seed}.bin"
    f.write_bytes(random.Random(seed).randbytes(200_000))
    repo.add([f])


DATA_RECORDS = 300


def op_data_add(repo_path: str, seed: int) -> None:
    """Append a labeling cycle of DATA_RECORDS records to dataset 'cycles'."""
    import numpy as np
    import modelhub
    rng = np.random.default_rng(seed)
    f = Path(repo_path) / f"cycle{seed}.npz"
    np.savez(f, x=rng.standard_normal((DATA_RECORDS, 1, 16, 16)).astype(np.float32), y=rng.integers(0, 10, DATA_RECORDS))
    modelhub.open_repo(repo_path).data_add("cycles", [f])


def dataset_state(repo) -> tuple[int, int]:
    """(version, records) of dataset 'cycles', or (0, 0)."""
    for d in repo.datasets():
        if d.name == "cycles":
            return d.version, d.n_records
    return 0, 0


def op_archive(repo_path: str, seed: int) -> None:
    import modelhub
    from modelhub.repo.archive import archive
    archive(modelhub.open_repo(repo_path), alpha=[1.0, 1.5, 4.0][seed % 3])


OPS = {"commit": op_commit, "gc": op_gc, "add": op_add, "archive": op_archive, "data_add": op_data_add}


def register_op(name: str, fn) -> None:
    """Capabilities add their own operations (archive, data add) here."""
    OPS[name] = fn


# -- the zygote -------------------------------------------------------------------------------

def zygote_main() -> None:
    import modelhub  # noqa: F401 - imported once, inherited by every child
    import torch  # noqa: F401
    for extra in os.environ.get("CRASH_OPS_MODULES", "").split(","):
        if extra:
            __import__(extra)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                OPS[cmd["op"]](cmd["repo"], int(cmd["seed"]))
            except BaseException as exc:  # noqa: BLE001 - reported through the exit code
                sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
                code = 1
            sys.stdout.flush()
            os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"status": status}), flush=True)


@dataclass
class TrialResult:
    op: str
    seed: int
    killed: bool        # the child was still running when the signal was sent
    exit_status: int
    duration_s: float


class Zygote:
    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import crashlib; crashlib.zygote_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=str(HERE),
        )
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}

    def run(self, op: str, repo: Path, seed: int, kill_after: float | None) -> TrialResult:
        t0 = time.perf_counter()
        self.proc.stdin.write(json.dumps({"op": op, "repo": str(repo), "seed": seed}) + "\n")
        self.proc.stdin.flush()
        pid = json.loads(self.proc.stdout.readline())["pid"]
        killed = False
        if kill_after is not None:
            time.sleep(kill_after)
            try:
                os.kill(pid, signal.SIGKILL)
                killed = True
            except ProcessLookupError:
                pass
        status = json.loads(self.proc.stdout.readline())["status"]
        killed = killed and os.WIFSIGNALED(status)
        return TrialResult(op, seed, killed, status, time.perf_counter() - t0)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


# -- verification -----------------------------------------------------------------------------

def fingerprint(state) -> str:
    """SHA-256 over names and bit patterns (never float equality)."""
    import torch  # imported lazily: the zygote imports it once, before forking

    h = hashlib.sha256()
    for k, v in state.items():
        h.update(k.encode())
        h.update(v.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def snapshot_versions(repo) -> dict[str, str]:
    """version id -> fingerprint of its weights (bit patterns)."""
    return {v.id: fingerprint(repo.checkout(v.id, rebuild_module=False).state_dict) for v in repo.log()}


def verify_after_crash(repo_path: Path, before: dict[str, str], trial: TrialResult,
                       data_before: tuple[int, int] | None = None) -> dict[str, str]:
    """Raise AssertionError if the crash lost or corrupted anything; return the new fingerprints.

    For `data_add`, ``data_before`` is the dataset's (version, records) before the
    trial: afterwards it must be unchanged or exactly one cycle further, and
    every record must load.
    """
    import modelhub
    repo = modelhub.open_repo(repo_path)
    if trial.op == "data_add" and data_before is not None:
        version, records = dataset_state(repo)
        assert (version, records) in (data_before, (data_before[0] + 1, data_before[1] + DATA_RECORDS)), \
            f"dataset went from {data_before} to {(version, records)}: a partial append"
        if trial.exit_status == 0:
            assert version == data_before[0] + 1, "a data add that finished is missing"
        if version:
            assert len(repo.dataset(f"cycles@{version}").y) == records
    report = repo.fsck()
    assert report.ok, [p.to_dict() for p in report.errors]
    after = snapshot_versions(repo)
    for vid, fp in before.items():
        assert after.get(vid) == fp, f"version {vid[:12]} changed or vanished after killing {trial.op}"
    new = set(after) - set(before)
    if trial.op == "commit":
        assert len(new) <= 1, "a single commit produced several versions"
        for vid in new:  # all or nothing: a committed trial holds exactly the trial's weights
            assert after[vid] == fingerprint(trial_state(trial.seed))
        if trial.exit_status == 0:
            assert len(new) == 1, "a commit that finished is missing"
    else:
        assert not new, f"{trial.op} created versions"
    return after


if __name__ == "__main__":
    zygote_main()
