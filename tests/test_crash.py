"""SIGKILL at random points of commit, add, gc, archive and data add never corrupts or loses anything.

The default run injects a few kills per operation; set DLV_CRASH_TRIALS=200
(or run benchmarks/soak.py) for the stress campaign.
"""
from __future__ import annotations

import os
import random

import pytest

import modelhub
from crashlib import Zygote, dataset_state, op_commit, snapshot_versions, verify_after_crash

TRIALS = int(os.environ.get("DLV_CRASH_TRIALS", "4"))


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


@pytest.mark.parametrize("op", ["commit", "add", "gc", "archive", "data_add"])
def test_killed_operations_leave_the_repository_consistent(tmp_path, zygote, op) -> None:
    root = tmp_path / "repo"
    repo = modelhub.init_repo(root)
    for seed in (1000, 1001, 1002):
        op_commit(str(root), seed)
    before = snapshot_versions(repo)
    # Calibrate: how long does the operation take when left alone?
    calib = zygote.run(op, root, 0, kill_after=None)
    assert calib.exit_status == 0
    before = verify_after_crash(root, before, calib)
    rng = random.Random(op)
    killed = 0
    for seed in range(1, TRIALS + 1):
        if op == "gc":  # give gc something to delete: orphan blobs from a "crashed writer"
            for i in range(20):
                repo.store.put(os.urandom(5000) + bytes([seed, i]))
        data_before = dataset_state(repo)
        trial = zygote.run(op, root, seed, kill_after=rng.uniform(0, calib.duration_s))
        killed += trial.killed
        before = verify_after_crash(root, before, trial, data_before)
    assert killed >= 1, "no kill landed inside the operation; the calibration is off"
