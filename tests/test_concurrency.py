"""Several dlv processes on one repository wait for each other; every commit lands."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import torch

import modelhub

WORKER = textwrap.dedent(
    """
    import sys, torch
    import modelhub
    repo = modelhub.open_repo(sys.argv[1])
    worker = int(sys.argv[2])
    for i in range(4):
        torch.manual_seed(worker * 100 + i)
        repo.commit({"w": torch.randn(64, 64)}, name=f"w{worker}", message=f"commit {i}")
        repo.log()              # reads interleave with other processes' writes
    """
)


def test_parallel_processes_commit_and_read_without_errors(tmp_path) -> None:
    repo = modelhub.init_repo(tmp_path / "r")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(repo.root), str(w)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    versions = repo.log()
    assert len(versions) == 16
    assert sorted({v.model for v in versions}) == ["w0", "w1", "w2", "w3"]
    assert all(sorted(v.seq for v in versions if v.model == m) == [1, 2, 3, 4] for m in ("w0", "w1", "w2", "w3"))


# A `dlv` process whose flock calls are watched: the marker file appears once the lock was
# refused to it, i.e. once it is provably running and blocked on a lock another process holds.
# (catalog/lock.py waits by polling flock with LOCK_NB, so a refusal is a BlockingIOError.)
WATCHED_CLI = textwrap.dedent(
    """
    import fcntl, sys
    from pathlib import Path
    marker = Path(sys.argv[1])
    real_flock = fcntl.flock
    def flock(fd, operation):
        try:
            return real_flock(fd, operation)
        except BlockingIOError:
            marker.touch()
            raise
    fcntl.flock = flock
    from modelhub.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


def test_cli_processes_wait_for_the_lock(tmp_path) -> None:
    repo = modelhub.init_repo(tmp_path / "r")
    blocked = tmp_path / "blocked"
    with repo.catalog.write():  # this process holds the exclusive lock ...
        waiter = subprocess.Popen([sys.executable, "-c", WATCHED_CLI, str(blocked), "log", "--repo", str(repo.root)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # ... until the CLI has started and been refused the lock (or has ended without waiting)
        deadline = time.monotonic() + 300
        while not blocked.exists() and waiter.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        ended_while_locked = waiter.poll() is not None
    out, err = waiter.communicate(timeout=120)
    assert blocked.exists(), f"the CLI never met the held lock (exit {waiter.returncode}): {err}"
    assert not ended_while_locked, f"the CLI ended while the lock was held (exit {waiter.returncode}): {err}"
    assert waiter.returncode == 0, err
    assert "(no rows)" in out


MIXED = textwrap.dedent(
    """
    import sys, torch
    import modelhub
    from modelhub.repo.archive import archive
    repo = modelhub.open_repo(sys.argv[1])
    role, worker = sys.argv[2], int(sys.argv[3])
    for i in range(3):
        if role == "commit":
            torch.manual_seed(worker * 100 + i)
            base = {"w": torch.randn(48, 48), "b": torch.randn(48)}
            repo.commit(base, name=f"m{worker}", message=f"commit {i}", hparams={"i": i})
        elif role == "query":
            rows = repo.query('select m where m.hparams.i >= 0 order by m.creation_time').rows
            assert all(len(r) >= 2 for r in rows)
        else:
            archive(repo, alpha=2.0)
    """
)


def test_committing_querying_and_archiving_processes_all_succeed(tmp_path) -> None:
    repo = modelhub.init_repo(tmp_path / "r")
    repo.commit({"w": torch.randn(48, 48), "b": torch.randn(48)}, name="m0", message="seed", hparams={"i": -1})
    script = tmp_path / "mixed.py"
    script.write_text(MIXED)
    roles = [("commit", 1), ("commit", 2), ("query", 3), ("archive", 4)]
    procs = [
        subprocess.Popen([sys.executable, str(script), str(repo.root), role, str(w)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for role, w in roles
    ]
    for (role, _), p in zip(roles, procs):
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"{role}: {err}"
    assert sorted(v.ref for v in repo.log() if v.model != "m0") == [f"m{w}@{i}" for w in (1, 2) for i in (1, 2, 3)]
    assert repo.fsck(deep=True).ok
