"""A full disk (issue 16, item 2): a commit that landed is reported as landed; one that did not is a
one-line error with exit code 74, and nothing is half done. ENOSPC is simulated by monkeypatching."""
from __future__ import annotations

import errno

import duckdb
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from helpers import tiny_cnn
from modelhub.catalog import db as catalog_db
from modelhub.errors import DiskFullError
from modelhub.storage import atomic

FULL = "IO Error: Could not write file: No space left on device"


@pytest.fixture
def housekeeping_fails(monkeypatch):
    """DuckDB's CHECKPOINT and the scope's close fail after the transaction committed (a full disk)."""
    real_close = catalog_db._ScopeConnection.close
    calls = {"checkpoint": 0, "close": 0}

    def checkpoint(self):
        calls["checkpoint"] += 1
        raise duckdb.IOException(FULL)

    def close(self):
        calls["close"] += 1
        real_close(self)
        raise duckdb.IOException(FULL)

    monkeypatch.setattr(catalog_db._ScopeConnection, "checkpoint", checkpoint)
    monkeypatch.setattr(catalog_db._ScopeConnection, "close", close)
    return calls


def _weights(path, seed=0):
    save_file(tiny_cnn(seed).state_dict(), str(path))
    return str(path)


def test_commit_that_landed_is_reported_as_landed_when_checkpoint_and_close_fail(repo, cli, housekeeping_fails):
    code, out, err = cli("commit", "--repo", str(repo.root), "-m", "first", "--name", "m",
                         "--weights", _weights(repo.root / "w.safetensors"))
    assert (code, err) == (0, "") and out.startswith("[m@1 ")
    assert housekeeping_fails["checkpoint"] == 1
    assert [v.ref for v in repo.log()] == ["m@1"]          # readable: the WAL is replayed


def test_archive_and_data_add_succeed_when_only_housekeeping_fails(repo, tmp_path, housekeeping_fails):
    repo.commit(tiny_cnn(0), name="m", message="a")
    repo.commit(tiny_cnn(1), name="m", message="b")
    from modelhub.repo.archive import archive
    assert archive(repo, alpha=2.0).n_tensors > 0
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2), np.float32), y=np.arange(4))
    assert repo.data_add("d", [tmp_path / "d.npz"]).ref == "d@1"
    assert housekeeping_fails["checkpoint"] >= 4
    assert repo.fsck(deep=True).ok and repo.dataset("d").n == 4


def test_a_commit_that_cannot_be_written_fails_in_one_line_and_leaves_nothing(repo, cli, monkeypatch):
    weights = _weights(repo.root / "w.safetensors")
    assert cli("commit", "--repo", str(repo.root), "-m", "first", "--name", "m", "--weights", weights)[0] == 0

    def commit(self):
        self._con.rollback()
        raise duckdb.IOException(FULL)

    monkeypatch.setattr(catalog_db._ScopeConnection, "commit", commit, raising=False)
    code, out, err = cli("commit", "--repo", str(repo.root), "-m", "second", "--name", "m",
                         "--weights", _weights(repo.root / "w2.safetensors", seed=1))
    assert code == 74 and out == ""
    assert err.startswith("error: no space left on the device while writing the catalog")
    assert err.count("\n") == 1 and "Traceback" not in err
    monkeypatch.undo()
    assert [v.ref for v in repo.log()] == ["m@1"]
    assert repo.fsck().ok


def test_a_full_disk_during_blob_writes_is_one_line_with_exit_74(repo, cli, tmp_path, monkeypatch):
    np.savez(tmp_path / "d.npz", x=np.ones((4, 2), np.float32), y=np.arange(4))

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    code, out, err = cli("data", "--repo", str(repo.root), "add", "d", str(tmp_path / "d.npz"))
    assert code == 74 and err.startswith("error: no space left on the device while writing ")
    assert err.count("\n") == 1
    code, _, err = cli("commit", "--repo", str(repo.root), "-m", "x", "--name", "m",
                       "--weights", _weights(tmp_path / "w.safetensors"))
    assert code == 74 and err.count("\n") == 1
    monkeypatch.undo()
    assert repo.log() == [] and repo.datasets() == []
    assert not list(repo.paths.objects.glob("*/.tmp-*"))


def test_the_cli_maps_any_stray_duckdb_error_to_a_one_line_error(cli, repo, monkeypatch):
    def broken(*_a, **_k):
        raise duckdb.Error("Corrupt database file: computed checksum 1 does not match stored checksum 2")

    monkeypatch.setattr("modelhub.repo.repository.Repo.log", broken)
    code, _, err = cli("log", "--repo", str(repo.root))
    assert code == 65 and err.startswith("error: the catalog is damaged (Corrupt database file")
    assert err.count("\n") == 1


def test_disk_full_error_is_one_class_with_its_own_exit_code():
    from modelhub.cli.exitcodes import exit_code_for
    assert exit_code_for(DiskFullError("x")) == 74
    with pytest.raises(DiskFullError, match="no space left"):
        raise catalog_db.translate_error(duckdb.IOException(FULL))


def test_a_full_disk_during_archive_is_a_disk_full_error_and_changes_nothing(repo, monkeypatch):
    from modelhub.repo.archive import archive
    repo.commit(tiny_cnn(0), name="m", message="a")
    tuned = tiny_cnn(0)
    with torch.no_grad():
        tuned.fc2.weight.add_(1e-3)
    repo.commit(tuned, name="m", message="b")
    before = repo.stats()

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(DiskFullError, match="no space left on the device while writing"):
        archive(repo, alpha=4.0)
    monkeypatch.undo()
    after = repo.stats()
    assert (after.n_versions, after.stored_bytes) == (before.n_versions, before.stored_bytes)
    assert repo.fsck(deep=True).ok


_LIMITED_COMMIT = """
import os, resource, signal, sys
from modelhub.cli import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # writes past the limit fail with EFBIG instead
catalog, root, weights = sys.argv[1:4]
limit = os.path.getsize(catalog)                 # the catalog file may not grow: its checkpoint fails
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
sys.exit(main(["commit", "-m", "big", "--name", "m", "--weights", weights, "--repo", root]))
"""


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGXFSZ"), reason="needs POSIX file size limits")
def test_a_real_checkpoint_failure_after_commit_is_reported_as_committed(repo, tmp_path):
    """No monkeypatching: DuckDB itself fails to grow the catalog file after COMMIT wrote the WAL."""
    import subprocess
    import sys
    repo.commit({"w": torch.zeros(4)}, name="m", message="first")
    weights = tmp_path / "big.safetensors"
    save_file({f"t{i}": torch.randn(30_000) for i in range(40)}, str(weights))
    env = dict(__import__("os").environ, DLV_HOT_COPIES="0")
    proc = subprocess.run([sys.executable, "-c", _LIMITED_COMMIT, str(repo.paths.catalog), str(repo.root), str(weights)],
                          capture_output=True, text=True, env=env)
    assert (proc.returncode, proc.stderr) == (0, "") and proc.stdout.startswith("[m@2 ")
    wal = repo.paths.catalog.with_name("catalog.duckdb.wal")
    assert wal.exists() and wal.stat().st_size > 0          # the checkpoint really failed
    assert [v.ref for v in repo.log()] == ["m@2", "m@1"]     # and the commit landed (the WAL is replayed)
    repo.commit({"w": torch.ones(4)}, name="m", message="third")   # the next writer checkpoints
    assert not wal.exists() or wal.stat().st_size == 0
    assert repo.fsck(deep=True).ok
