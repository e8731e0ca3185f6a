"""Sharing through remote hubs: publish, search and pull (docs/REMOTE.md).

A remote is a folder or an S3-compatible bucket reached through fsspec. It
holds content-addressed blobs (exactly as ``.dlv/objects``) and an
append-only log of immutable catalog segments; readers take the union of
all segments. Layering: cli -> remote -> repo / dql -> catalog -> storage.

    from modelhub.remote import add_remote, open_remote, publish, pull, search
    add_remote(repo, "hub", "s3://bucket/models")
    publish(repo, open_remote(repo, "hub"))
    search(open_remote(repo, "hub"), 'select m where m.name like "resnet%"')
    pull(repo, open_remote(repo, "hub"), "resnet@2")     # None instead of a ref: every version
    clone("s3://bucket/models", "models")                # a new repository with every version
"""
from .clone import CloneResult, clone
from .config import RemoteConfig, add_remote, get_remote, list_remotes, open_remote, remove_remote
from .errors import RemoteConfigError, RemoteFormatError, RemoteUnavailableError
from .publish import PublishReport, publish
from .pull import PullReport, pull
from .search import search

__all__ = [
    "RemoteConfig", "add_remote", "get_remote", "list_remotes", "open_remote", "remove_remote",
    "RemoteConfigError", "RemoteFormatError", "RemoteUnavailableError",
    "PublishReport", "publish", "PullReport", "pull", "search", "CloneResult", "clone",
]
