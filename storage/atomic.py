"""Crash-safe file writes: temp file -> fsync -> rename -> fsync(dir).

A reader never sees a half-written file: either the old name is absent or it
holds the complete bytes. The directory is fsynced so the rename itself
survives a power loss, and a directory created on the way (a new fan-out
folder under ``objects/``) is fsynced into its parent for the same reason.

A full disk (ENOSPC, EDQUOT) is raised as :class:`StorageFullError`, which is
both a storage error and an ``OSError``; nothing is left behind (the temp
file is removed).
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from .errors import StorageFullError

#: errno values that mean "no room": the write may succeed once space is freed
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename, a new child folder) durable.

    Errors are raised, never swallowed: a rename that cannot be made durable
    must not be reported as done. The one exception is EINVAL, which a
    filesystem without directory fsync returns (nothing to make durable).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """``mkdir -p`` that fsyncs every directory it creates into its parent."""
    path = Path(path)
    if path.is_dir():
        return
    created: list[Path] = []
    p = path
    while not p.exists():
        created.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    for d in reversed(created):
        fsync_dir(d.parent)


def atomic_write(path: Path | str, data: bytes | memoryview, *, exist_ok_same: bool = False) -> None:
    """Write ``data`` to ``path`` atomically.

    With ``exist_ok_same`` an existing file is left untouched (content-addressed
    stores: the name already implies the content).
    """
    path = Path(path)
    if exist_ok_same and path.exists():
        return
    try:
        make_dirs(path.parent)
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
    except OSError as exc:
        if exc.errno in FULL_ERRNOS and not isinstance(exc, StorageFullError):
            raise StorageFullError(str(path)) from exc
        raise
