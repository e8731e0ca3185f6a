"""Crash-safe file writes: temp file -> fsync -> rename -> fsync(dir).

A reader never sees a half-written file: either the old name is absent or it
holds the complete bytes. The directory is fsynced so the rename itself
survives a power loss.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path | str, data: bytes | memoryview, *, exist_ok_same: bool = False) -> None:
    """Write ``data`` to ``path`` atomically.

    With ``exist_ok_same`` an existing file is left untouched (content-addressed
    stores: the name already implies the content).
    """
    path = Path(path)
    if exist_ok_same and path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)
