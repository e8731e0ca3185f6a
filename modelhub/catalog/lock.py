"""Inter-process repository lock.

DuckDB lets one process write a database file at a time, and a read-only
open fails while another process writes. Every catalog access therefore
takes an ``flock`` on ``.dlv/lock`` first: shared for reads, exclusive for
writes. Waiting is by polling so a clear timeout error can be raised; the
lock is re-entrant within a process (flock is per open file description, so a
nested acquisition through a second descriptor would deadlock).
"""
from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import LockTimeoutError

DEFAULT_TIMEOUT_S = float(os.environ.get("DLV_LOCK_TIMEOUT", "600"))

_state_guard = threading.Lock()
# lock path -> [fd, mode ('sh'|'ex'), depth]
_held: dict[str, list] = {}
_thread_lock = threading.RLock()  # serializes catalog use between threads of one process


@contextmanager
def repo_lock(path: Path, exclusive: bool, timeout_s: float | None = None) -> Iterator[None]:
    timeout_s = DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
    key = str(path)
    with _thread_lock:
        entry = _held.get(key)
        if entry is not None:
            if exclusive and entry[1] == "sh":
                # Upgrading in place could deadlock against another upgrader;
                # callers must open the write scope first.
                raise RuntimeError("cannot take a write lock inside a read scope")
            entry[2] += 1
            try:
                yield
            finally:
                entry[2] -= 1
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _acquire(fd, exclusive, timeout_s, path)
            _held[key] = [fd, "ex" if exclusive else "sh", 1]
            try:
                yield
            finally:
                del _held[key]
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _acquire(fd: int, exclusive: bool, timeout_s: float, path: Path) -> None:
    flag = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            fcntl.flock(fd, flag)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockTimeoutError(
                    f"another dlv process has held the repository lock {path} for over "
                    f"{timeout_s:.0f}s; wait for it to finish or raise DLV_LOCK_TIMEOUT"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
