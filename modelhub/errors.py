"""One error hierarchy for every user-facing failure.

Every message says what went wrong *and how to fix it*. The CLI maps these
classes to exit codes in one place (``modelhub.cli.exitcodes``) and prints the
message on one line, never a traceback.
"""
from __future__ import annotations


class ModelhubError(Exception):
    """Base of every error modelhub raises on purpose."""


class RepoError(ModelhubError):
    """The repository is missing, malformed, or cannot be opened."""


class RepoExistsError(RepoError):
    """`init` of a folder that already holds a repository."""


class LockTimeoutError(RepoError):
    """Another process held the repository lock for too long."""


class CatalogError(ModelhubError):
    """The catalog database is unreadable or its schema is unknown."""


class DiskFullError(ModelhubError):
    """A write found no space left on the device; nothing half-done was recorded."""


class RefError(ModelhubError):
    """A version reference is unknown or ambiguous."""


class InputError(ModelhubError):
    """Bad user input: arguments, messages, files."""


class WeightsError(InputError):
    """A weights file is missing, corrupt, unsafe, or does not fit the network."""


class GraphError(ModelhubError):
    """A network definition cannot be captured or rebuilt."""


class ArchiveError(ModelhubError):
    """The parameter archive or object store failed (corruption, missing blobs)."""


class IntegrityError(ArchiveError):
    """Stored bytes do not match their checksum."""


class CatalogCorruptError(IntegrityError):
    """The catalog database's own storage is damaged (DuckDB checksum or format errors)."""


class QueryError(ModelhubError):
    """Base of DQL failures (syntax, binding, planning, execution)."""


class EngineError(ModelhubError):
    """Training/evaluation failed in the engine."""


class DataError(InputError):
    """A dataset is missing or malformed."""


class RemoteError(ModelhubError):
    """A remote hub is unreachable, malformed or hostile."""
