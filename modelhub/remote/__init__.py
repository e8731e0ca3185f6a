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
from ..lazy import lazy_exports

# Exported lazily (PEP 562): `dlv remote list` reads the config only, while publish, pull
# and search import the query language and the repository's weight paths.
_EXPORTS = {
    "RemoteConfig": ".config", "add_remote": ".config", "get_remote": ".config", "list_remotes": ".config",
    "open_remote": ".config", "remove_remote": ".config",
    "RemoteConfigError": ".errors", "RemoteFormatError": ".errors", "RemoteUnavailableError": ".errors",
    "PublishReport": ".publish", "publish": ".publish", "PullReport": ".pull", "pull": ".pull",
    "search": ".search", "CloneResult": ".clone", "clone": ".clone",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
