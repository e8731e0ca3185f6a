"""Errors of the storage layer (no modelhub import allowed here)."""
import errno as _errno


class StorageError(Exception):
    """Base class of every storage failure; the message says how to fix it."""


class CorruptBlobError(StorageError):
    """A blob's bytes do not match its content hash (or cannot be decoded)."""

    def __init__(self, blob_hash: str, detail: str) -> None:
        super().__init__(
            f"object {blob_hash[:16]} is corrupt ({detail}); run `dlv fsck` to list "
            "damaged objects and restore them from a remote with `dlv pull`"
        )
        self.blob_hash = blob_hash


class MissingBlobError(StorageError):
    def __init__(self, blob_hash: str) -> None:
        super().__init__(
            f"object {blob_hash[:16]} is missing from the object store; run `dlv fsck` "
            "to list what is damaged"
        )
        self.blob_hash = blob_hash


class CodecError(StorageError):
    """An encoding or decoding step received input it cannot handle."""


class DiskFullError(StorageError, OSError):
    """A write found no space left (ENOSPC/EDQUOT); also an ``OSError`` for callers that catch those."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"no space left on the device while writing {path}; nothing was changed — free some space "
            "(`dlv gc` removes unreferenced blobs) and run the command again"
        )
        self.errno = _errno.ENOSPC
        self.path = path

