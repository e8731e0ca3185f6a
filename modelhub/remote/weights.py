"""A remote's versions as progressive evaluation's weight source: no pull, segments on demand.

``remote_weights(store)`` reads the remote's catalog (its segments, into a
temporary :class:`~.view.RemoteView`) and serves
:class:`modelhub.progressive.access.VersionWeights` over it: networks,
manifests and blob sizes come from the view's catalog, blob bytes from the
remote one object at a time. A tensor's segments are separate objects, so
progressive evaluation fetches exactly the segments it reads: one ranged GET
per segment (``RemoteStore.get_blob`` asks for the declared size and checks
length and hash), counted in :attr:`RemoteWeights.requests` and
:attr:`RemoteWeights.bytes_fetched`. Nothing is written to the repository.
"""
from __future__ import annotations

import threading

from ..repo.engine_access import RepoEngineAccess
from ..repo.refs import resolve
from ..errors import IntegrityError
from .progress import NULL_PROGRESS, Progress
from .transport import RemoteStore
from .view import RemoteView, read_index


class _RemoteBlobs:
    """The remote's objects behind a store-like ``get``, each read checked against the catalog's size."""

    def __init__(self, store: RemoteStore, sizes: dict[str, int]) -> None:
        self._store, self._sizes = store, sizes
        self._lock = threading.Lock()
        self.requests = 0
        self.bytes_fetched = 0

    def get(self, blob_hash: str) -> bytes:
        size = self._sizes.get(blob_hash)
        if size is None:
            raise IntegrityError(f"remote {self._store.name} lists no object {blob_hash[:16]} that its catalog "
                                 f"references; run `dlv publish {self._store.name} REF --repair` from a "
                                 "repository that has the version")
        data = self._store.get_blob(blob_hash, size)
        with self._lock:
            self.requests += 1
            self.bytes_fetched += len(data)
        return data


class _RemoteCatalog:
    """The three things RepoEngineAccess asks of a repository, over a remote's view."""

    def __init__(self, view: RemoteView, blobs: _RemoteBlobs) -> None:
        self.catalog = view.catalog
        self.store = blobs

    def resolve(self, ref: str) -> str:
        with self.catalog.read() as con:
            return resolve(con, ref)


class RemoteWeights(RepoEngineAccess):
    """VersionWeights over a remote (use as a context manager: the view's temporary catalog is removed)."""

    def __init__(self, store: RemoteStore, view: RemoteView) -> None:
        self.remote = store
        self._view = view
        self._blobs = _RemoteBlobs(store, view.index.blob_sizes)
        super().__init__(_RemoteCatalog(view, self._blobs))

    @property
    def catalog(self):
        """The remote's catalog view (DQL selections run on it)."""
        return self._view.catalog

    @property
    def requests(self) -> int:
        return self._blobs.requests

    @property
    def bytes_fetched(self) -> int:
        return self._blobs.bytes_fetched

    def close(self) -> None:
        self._view.close()

    def __enter__(self) -> "RemoteWeights":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def remote_weights(store: RemoteStore, progress: Progress = NULL_PROGRESS) -> RemoteWeights:
    """The remote's versions, readable progressively (downloads its catalog, no weights)."""
    return RemoteWeights(store, RemoteView(read_index(store, progress)))
