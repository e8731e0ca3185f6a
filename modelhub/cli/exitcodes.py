"""The one place where errors become exit codes."""
from __future__ import annotations

import errno

from .. import errors as E
from ..storage.errors import StorageError

OK = 0
#: most specific class first; the first isinstance match wins
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (E.LockTimeoutError, 75),   # EX_TEMPFAIL: try again later
    (E.DiskFullError, 74),      # EX_IOERR: no space left; free some and retry
    (E.IntegrityError, 65),     # EX_DATAERR: stored data is damaged
    (E.RefError, 3),
    (E.RepoError, 4),
    (E.CatalogError, 4),
    (E.WeightsError, 5),
    (E.DataError, 5),
    (E.InputError, 2),
    (E.QueryError, 6),
    (E.GraphError, 7),
    (E.ArchiveError, 8),
    (E.EngineError, 9),
    (E.RemoteError, 10),
    (E.ModelhubError, 1),
)
USAGE = 2          # argparse's own code for bad command lines
INTERRUPTED = 130

#: what each exit code means, for `dlv --help` (the codes come from the table above)
MEANINGS: tuple[tuple[int, str], ...] = (
    (OK, "success"),
    (1, "other error"),
    (USAGE, "bad command line or input"),
    (3, "unknown version, model, tag or remote name"),
    (4, "no repository here, or the catalog cannot be used"),
    (5, "weights or data do not fit"),
    (6, "query error"),
    (7, "network graph error"),
    (8, "archive error"),
    (9, "engine (training/evaluation) error"),
    (10, "remote error"),
    (65, "stored data is damaged (see `dlv fsck`)"),
    (74, "no space left on the device"),
    (75, "the repository is locked by another process; try again"),
    (INTERRUPTED, "interrupted"),
)


def help_epilog() -> str:
    """The exit-code table as `dlv --help` prints it."""
    return "exit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in MEANINGS)


def exit_code_for(exc: BaseException) -> int:
    for cls, code in EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return 1


def as_modelhub_error(exc: BaseException) -> E.ModelhubError | None:
    """A foreign failure that reached the CLI (DuckDB, a full disk) as the modelhub error to report.

    None for anything else: a bug, which keeps its traceback.
    """
    if isinstance(exc, StorageError):  # a plain file write's full disk (storage.atomic); the mapping is the boundary's
        from ..storage_boundary import translate
        return translate(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" while writing {exc.filename}" if getattr(exc, "filename", None) else ""
        text = str(exc) if "no space left on the device" in str(exc) else (
            f"no space left on the device{where}; free some space (`dlv gc` removes unreferenced blobs) "
            "and run the command again")
        return E.DiskFullError(text)
    if isinstance(exc, OSError) and exc.errno in _PATH_ERRNOS:
        return E.InputError(path_error_message(exc))
    if type(exc).__module__.lstrip("_") == "duckdb":
        from ..catalog.db import translate_error
        return translate_error(exc)
    return None


#: an OSError about a path, not a bug: a folder where a file was named, a file in the way of a
#: folder, no permission, a read-only file system, a path too long or looping
_PATH_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EROFS,
                          errno.ENAMETOOLONG, errno.ELOOP, errno.EEXIST})


def path_error_message(exc: OSError) -> str:
    """`dlv checkout -o file/out`: "/x/file/out: not a directory; check the path (and its
    permissions), or choose another"."""
    what = (exc.strerror or "cannot be used").lower()
    where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
    return f"{where}{what}; check the path (and its permissions), or choose another"
