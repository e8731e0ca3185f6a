"""Several dlv processes on one repository wait for each other; every commit lands."""
from __future__ import annotations

import subprocess
import sys
import textwrap

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


def test_cli_processes_wait_for_the_lock(tmp_path) -> None:
    repo = modelhub.init_repo(tmp_path / "r")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import time, modelhub
            repo = modelhub.open_repo({str(repo.root)!r})
            with repo.catalog.write():
                print("locked", flush=True)
                time.sleep(1.5)
        """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    proc = subprocess.run([sys.executable, "-m", "modelhub", "log", "--repo", str(repo.root)], capture_output=True, text=True, timeout=60)
    holder.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "(no rows)" in proc.stdout
