"""The one boundary between modelhub and its parameter archive (``storage/``).

``storage/`` never imports modelhub: it raises its own :class:`StorageError`
family, whose classes say what failed (a corrupt or missing object, a damaged
or unknown encoding, a full disk) and whose messages speak of objects and
manifests only. This module is where those errors become modelhub errors, with
the how-to-fix a `dlv` user needs:

- :class:`BlobStore` is the repository's object store (``repo.store``); every
  method translates.
- :func:`encode_tensor`, :func:`decode_tensor` and :func:`read_intervals` are
  the codec entry points modelhub calls; each translates.
- :func:`translate` is the mapping itself, also used by the CLI for the one
  storage error a plain file write can raise (a full disk, from
  ``storage.atomic.atomic_write``, which is also an ``OSError`` so that cache
  writes can ignore it).

Nothing else in modelhub catches or translates a ``StorageError``
(tests/test_storage_boundary.py checks the imports). Pure computations that
cannot raise one are used directly from ``storage``: ``storage.plan``,
``tensor_hash``, ``manifest_blobs``, ``delta_base``, ``DTYPE_SIZES``,
``content_hash``, ``encoder_id``.
"""
from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from .errors import ArchiveError, DiskFullError, IntegrityError, ModelhubError
from .storage.errors import (CorruptBlobError, DamagedEncodingError, MissingBlobError, StorageError,
                             StorageFullError)
from .storage.objects import ObjectStore as _ObjectStore
from .storage.objects import PendingBlobs

__all__ = ["BlobStore", "PendingBlobs", "CorruptObjectError", "MissingObjectError", "translate", "corrupt_object",
           "encode_tensor", "decode_tensor", "read_intervals", "known_mantissa_bits"]

_F = TypeVar("_F", bound=Callable)

_RESTORE_HINT = "run `dlv fsck` to list damaged objects and restore them from a remote with `dlv pull`"
_FSCK_HINT = "run `dlv fsck` to list what is damaged"
_SPACE_HINT = ("nothing was changed — free some space (`dlv gc` removes unreferenced blobs) "
               "and run the command again")


class CorruptObjectError(IntegrityError):
    """An object's bytes do not match its hash (or do not decode); ``blob_hash`` names it."""

    def __init__(self, blob_hash: str, message: str) -> None:
        super().__init__(message)
        self.blob_hash = blob_hash


class MissingObjectError(IntegrityError):
    """An object the catalog names is absent from ``.dlv/objects``; ``blob_hash`` names it."""

    def __init__(self, blob_hash: str, message: str) -> None:
        super().__init__(message)
        self.blob_hash = blob_hash


def translate(exc: StorageError) -> ModelhubError:
    """The modelhub error (class and message with how to fix it) for a storage failure."""
    if isinstance(exc, CorruptBlobError):
        return CorruptObjectError(exc.blob_hash, f"{exc}; {_RESTORE_HINT}")
    if isinstance(exc, MissingBlobError):
        return MissingObjectError(exc.blob_hash, f"{exc}; {_FSCK_HINT}")
    if isinstance(exc, StorageFullError):
        return DiskFullError(f"no space left on the device while writing {exc.path}; {_SPACE_HINT}")
    if isinstance(exc, DamagedEncodingError):
        # `dlv fsck` alone checks blobs, not what a manifest says; --deep decodes every tensor and lists
        # the versions a damaged entry affects
        return ArchiveError(f"{exc}; the catalog entry is damaged — run `dlv fsck --deep` to list the versions it affects")
    # CodecError (its message says what to pass instead) and UnknownFormatError (says: upgrade)
    return ArchiveError(str(exc))


def corrupt_object(blob_hash: str, detail: str) -> CorruptObjectError:
    """The error for bytes found corrupt above the storage layer (e.g. a decoded tensor that misses its hash)."""
    error = translate(CorruptBlobError(blob_hash, detail))
    assert isinstance(error, CorruptObjectError)
    return error


def _translated(fn: _F) -> _F:
    """``fn`` with every StorageError it raises turned into a modelhub error."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except StorageError as exc:
            raise translate(exc) from None
    return call  # type: ignore[return-value]


class BlobStore:
    """The repository's content-addressed object store (``.dlv/objects``), with modelhub errors.

    Same operations as :class:`storage.objects.ObjectStore` (which it wraps; see there for the
    semantics of each): ``put``, ``get``, ``read_view``, ``touch``, ``has``, ``size``, ``delete``, ``verify``,
    ``path_of`` and iteration over the stored names.
    """

    def __init__(self, root: Path | str) -> None:
        self._objects = _ObjectStore(root)
        self.root = self._objects.root

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r})"

    @_translated
    def path_of(self, blob_hash: str) -> Path:
        return self._objects.path_of(blob_hash)

    @_translated
    def put(self, data: bytes | memoryview, *, pending: PendingBlobs | None = None,
            blob_hash: str | None = None) -> str:
        return self._objects.put(data, pending=pending, blob_hash=blob_hash)

    @_translated
    def sync(self, pending: PendingBlobs) -> None:
        """Make the blobs put with ``pending`` durable (before any catalog row names them)."""
        pending.sync()

    @_translated
    def touch(self, blob_hash: str) -> bool:
        return self._objects.touch(blob_hash)

    @_translated
    def get(self, blob_hash: str, *, verify: bool = True) -> bytes:
        return self._objects.get(blob_hash, verify=verify)

    @_translated
    def read_view(self, blob_hash: str) -> bytes | memoryview:
        return self._objects.read_view(blob_hash)

    @_translated
    def has(self, blob_hash: str) -> bool:
        return self._objects.has(blob_hash)

    @_translated
    def size(self, blob_hash: str) -> int:
        return self._objects.size(blob_hash)

    @_translated
    def delete(self, blob_hash: str) -> None:
        self._objects.delete(blob_hash)

    @_translated
    def verify(self, blob_hash: str) -> None:
        self._objects.verify(blob_hash)

    def __iter__(self) -> Iterator[str]:
        names = iter(self._objects)
        while True:
            try:
                name = next(names)
            except StopIteration:
                return
            except StorageError as exc:
                raise translate(exc) from None
            yield name


# The codec modules import numpy and zstandard; they load on a codec's first call, so that
# reading the catalog (`dlv log`, `dlv status`) does not pay for them (tests/test_startup.py).

def _codec_entry(module: str, name: str) -> Callable:
    """``storage.<module>.<name>`` with its StorageErrors translated, the module imported on the first call."""
    @_translated
    def call(*args, **kwargs):
        return getattr(importlib.import_module(f"{__package__}.storage.{module}"), name)(*args, **kwargs)
    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"storage.{module}.{name}, with modelhub errors."
    return call


#: encode one tensor (see storage.tensors.encode_tensor)
encode_tensor = _codec_entry("tensors", "encode_tensor")
#: the smaller of the segmented and the context-coded delta (see storage.tensors.encode_delta_best)
encode_delta_best = _codec_entry("tensors", "encode_delta_best")
#: the exact bytes of a tensor from its manifest (see storage.tensors.decode_tensor)
decode_tensor = _codec_entry("tensors", "decode_tensor")
#: bounds of every element from a tensor's first k segments (see storage.progressive.read_intervals)
read_intervals = _codec_entry("progressive", "read_intervals")
#: mantissa bits known per level of a float tensor (see storage.progressive.known_mantissa_bits)
known_mantissa_bits = _codec_entry("progressive", "known_mantissa_bits")
