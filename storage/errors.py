"""Errors of the storage layer (no modelhub import allowed here).

Messages say what went wrong in this package's own terms (objects, manifests,
codecs) and, where the fix is local to the caller, how to fix it. They never
name a command-line tool: the application that uses this package translates
these errors at its boundary and adds the how-to-fix its users need (modelhub:
``modelhub/storage_boundary.py``). The classes say what kind of failure it is,
so that translation never parses a message.
"""
import errno as _errno


class StorageError(Exception):
    """Base class of every storage failure."""


class CorruptBlobError(StorageError):
    """A blob's bytes do not match its content hash (or cannot be decoded)."""

    def __init__(self, blob_hash: str, detail: str) -> None:
        super().__init__(f"object {blob_hash[:16]} is corrupt ({detail})")
        self.blob_hash = blob_hash
        self.detail = detail


class MissingBlobError(StorageError):
    """A blob a manifest or a caller names is absent from the object store."""

    def __init__(self, blob_hash: str) -> None:
        super().__init__(f"object {blob_hash[:16]} is missing from the object store")
        self.blob_hash = blob_hash


class CodecError(StorageError):
    """An encoding or decoding step received input it cannot handle (the message says what to pass instead)."""


class DamagedEncodingError(CodecError):
    """A manifest, or the bytes it names, contradicts itself: the stored encoding is damaged."""


class UnknownFormatError(CodecError):
    """A manifest names a codec, coding, packing or operation this release cannot read (written by a newer one)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}; upgrade modelhub to a release that reads it")


class StorageFullError(StorageError, OSError):
    """A write found no space left (ENOSPC/EDQUOT); also an ``OSError`` for callers that catch those."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no space left on the device while writing {path}; nothing was changed — "
                         "free some space and try again")
        self.errno = _errno.ENOSPC
        self.path = path
