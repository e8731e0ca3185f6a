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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from contextlib import contextmanager
from typing import Collection, Iterable, Iterator, Mapping

from . import directio
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


def make_dirs(path: Path, *, durable: bool = True) -> None:
    """``mkdir -p`` that fsyncs every directory it creates into its parent (``durable=False``:
    the caller does, see :func:`publish_temps`)."""
    path = Path(path)
    if path.is_dir():
        return
    created: list[Path] = []
    p = path
    while not p.exists():
        created.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    if durable:
        for d in reversed(created):
            fsync_dir(d.parent)


def atomic_write(path: Path | str, data: bytes | memoryview, *, exist_ok_same: bool = False) -> None:
    """Write ``data`` to ``path`` atomically and durably.

    With ``exist_ok_same`` an existing file is left untouched (content-addressed
    stores: the name already implies the content).
    """
    path = Path(path)
    if exist_ok_same and path.exists():
        return
    with _full_disk_as_storage_error(path):
        tmp = _write_temp(path, data, durable=True)
        try:
            os.replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise
        fsync_dir(path.parent)


def write_temp(path: Path | str, data: bytes | memoryview) -> str:
    """The first half of a deferred atomic write: ``data`` in a temp file beside ``path``, neither
    fsynced nor renamed. :func:`publish_temps` finishes many such writes with one batch of fsyncs.

    The rename waits for the fsync so that a file under its final name always holds complete
    bytes, even after a power loss: a content-addressed store trusts a present name and never
    rewrites it, so a torn file there would be reused by every later writer.
    """
    with _full_disk_as_storage_error(path):
        return _write_temp(str(path), data, durable=False)


def publish_temps(temps: Mapping[Path | str, Path | str], present: Iterable[Path | str] = (), *,
                  synced: Collection[str] = (), workers: int = 16) -> None:
    """Finish deferred writes ``{final path: temp path}``: fsync every temp file (and every file
    in ``present``: put by another writer that may not have synced it yet), rename each temp to
    its final name, then fsync the folders holding them (the renames) and those folders'
    parents (a fan-out folder created on the way). On an error the temps not yet renamed are
    removed and nothing under a final name is incomplete.

    One fsync per file costs a journal commit each (~3-8 ms on ext4), which was most of a
    streaming commit's time; issued from several threads at once the journal commits them
    together (300 blobs: 0.94 s one at a time, 0.26 s this way). Temps in ``synced`` were
    fsynced already (by the caller, since they were written): they are only renamed.
    """
    temps = {os.fspath(f): os.fspath(t) for f, t in temps.items()}
    present = [os.fspath(p) for p in present]
    if not temps and not present:
        return
    finals = [*temps, *present]
    folders = sorted({os.path.dirname(f) for f in finals})
    parents = sorted({os.path.dirname(f) for f in folders} - set(folders))
    renamed: set[str] = set()
    try:
        with _full_disk_as_storage_error(finals[0]):
            with ThreadPoolExecutor(max(1, min(workers, len(finals))), thread_name_prefix="storage-fsync") as pool:
                list(pool.map(fsync_file, [t for t in temps.values() if t not in synced] + present))
                for final, tmp in temps.items():
                    os.replace(tmp, final)
                    renamed.add(final)
                list(pool.map(fsync_dir, folders))
                list(pool.map(fsync_dir, parents))
    finally:
        for final, tmp in temps.items():
            if final not in renamed:
                _unlink(tmp)


def new_temp(folder: Path | str, prefix: str = ".tmp-", suffix: str = "") -> tuple[int, str]:
    """(write-only descriptor, path) of a new empty file ``<prefix><random><suffix>`` in ``folder``.

    Its mode is 0666 less the process's umask, as for any file a program creates (git's working
    trees and objects alike), not ``tempfile.mkstemp``'s 0600: that suits a shared temp folder,
    but the files written here become a checkout's weights or a repository's objects, which the
    umask (and the folder's own permissions) decide who may read. Cheaper than mkstemp too: no
    name generator object, one ``os.open``."""
    folder = os.fspath(folder)
    while True:
        tmp = os.path.join(folder, prefix + os.urandom(8).hex() + suffix)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:   # 64 random bits collided: draw again
            continue


def _write_temp(path: Path | str, data: bytes | memoryview, *, durable: bool) -> str:
    """``data`` in a new ``.tmp-<random>`` file beside ``path`` (:func:`new_temp`); returns its
    path. Written with one ``os.write`` loop on the raw fd: a buffered file object costs more
    than the write for the small blobs a commit puts by the thousand."""
    folder = os.path.dirname(os.fspath(path))
    if not os.path.isdir(folder):
        make_dirs(Path(folder), durable=durable)
    fd, tmp = new_temp(folder)
    try:
        try:
            view = memoryview(data).cast("B")
            if not directio.write_whole(fd, view):   # a large blob goes past the page cache
                while view:
                    view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _unlink(path: Path | str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@contextmanager
def _full_disk_as_storage_error(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in FULL_ERRNOS and not isinstance(exc, StorageFullError):
            raise StorageFullError(str(path)) from exc
        raise


def fsync_file(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
