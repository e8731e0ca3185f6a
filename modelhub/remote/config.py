"""The repository's list of remotes (catalog table ``remotes``) and opening one.

Adding a remote does not contact it (like ``git remote add``): the first
publish creates its layout. Options are fsspec storage options stored as
JSON (for S3: endpoint_url, region, ...). Credentials are never stored
(the catalog is a plain file, copied into backups): they come from the
environment, an AWS profile or the credential chain; ones an older version
stored are removed on first use, from the catalog file and its backups.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..catalog import remotes as catalog_remotes
from ..catalog.remotes import StoredRemote
from ..repo.records import Record
from .errors import RemoteConfigError, UnknownRemoteError
from .transport import RemoteStore, canonical_url, open_store, parse_url

REMOTE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")
_SECRET_KEY = re.compile(r"secret|token|password|key", re.IGNORECASE)


@dataclass(frozen=True)
class RemoteConfig(Record):
    name: str
    url: str
    options: dict[str, Any] = field(default_factory=dict)

    def masked(self) -> dict[str, Any]:
        return {k: ("***" if _SECRET_KEY.search(k) else v) for k, v in self.options.items()}

    def to_dict(self) -> dict:
        return {"name": self.name, "url": self.url, "options": self.masked()}


def check_remote_name(name: str) -> str:
    if not isinstance(name, str) or not REMOTE_NAME_RE.match(name):
        raise RemoteConfigError(
            f"invalid remote name {name!r}: use a letter first, then letters, digits, '_', '.' or '-' (at most 64)")
    return name


_CREDENTIALS_HINT = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) in the environment, "
                     "or use an AWS profile (AWS_PROFILE) or the AWS credential chain")


def _credential_keys(options: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in options if _SECRET_KEY.search(k))


def add_remote(repo, name: str, url: str, options: Mapping[str, Any] | None = None) -> RemoteConfig:
    check_remote_name(name)
    url = canonical_url(url)
    opts = dict(options or {})
    secrets = _credential_keys(opts)
    if secrets:
        raise RemoteConfigError(
            f"option(s) {', '.join(secrets)} look like credentials, which are never stored in the catalog "
            f"(it is a plain file, copied into backups); drop them and {_CREDENTIALS_HINT}")
    if parse_url(url).is_folder and opts:
        raise RemoteConfigError("folder remotes take no options; drop --option/--endpoint-url or use an s3:// URL")
    if parse_url(url).is_folder and (url + "/").startswith(str(repo.paths.dlv) + "/"):
        raise RemoteConfigError(f"{url} is inside this repository's .dlv folder; give a folder outside it, e.g. ../hub")
    with repo.catalog.write() as con:
        if catalog_remotes.stored_remote(con, name) is not None:
            raise RemoteConfigError(f"remote {name!r} already exists; remove it first with `dlv remote remove {name}`")
        catalog_remotes.add_stored_remote(con, StoredRemote(name, url, opts))
    return RemoteConfig(name, url, opts)


def list_remotes(repo) -> list[RemoteConfig]:
    with repo.catalog.read() as con:
        stored = catalog_remotes.stored_remotes(con)
    configs = [RemoteConfig(r.name, r.url, dict(r.options)) for r in stored]
    if any(_credential_keys(c.options) for c in configs):
        scrub_credentials(repo)   # stored by an older version: never listed, never kept
        configs = [RemoteConfig(c.name, c.url, {k: v for k, v in c.options.items() if not _SECRET_KEY.search(k)})
                   for c in configs]
    return configs


def scrub_credentials(repo) -> list[str]:
    """Remove credentials that older versions stored with remotes; returns the remotes affected.

    The options are rewritten without them, then the catalog file is rebuilt
    and its backups dropped, so the plain-text secrets leave the disk (DuckDB
    keeps old row bytes in free blocks).
    """
    from ..catalog.lock import repo_lock
    from ..catalog.maintenance import rewrite_catalog
    with repo_lock(repo.catalog.lock_path, exclusive=True):
        with repo.catalog.write() as con:
            affected = []
            for remote in catalog_remotes.stored_remotes(con):
                if _credential_keys(remote.options):
                    affected.append(remote.name)
                    kept = {k: v for k, v in remote.options.items() if not _SECRET_KEY.search(k)}
                    catalog_remotes.set_remote_options(con, remote.name, kept)
        if affected:
            rewrite_catalog(repo.catalog.db_path)
    return affected


def remove_remote(repo, name: str) -> RemoteConfig:
    cfg = get_remote(repo, name, allow_url=False)
    with repo.catalog.write() as con:
        catalog_remotes.delete_stored_remote(con, name)
    return cfg


def get_remote(repo, name_or_url: str, *, allow_url: bool = True) -> RemoteConfig:
    """A configured remote by name; with ``allow_url`` a folder path or s3:// URL works directly."""
    with repo.catalog.read() as con:
        stored = catalog_remotes.stored_remote(con, name_or_url)
        names = catalog_remotes.remote_names(con)
    if stored is not None:
        options = dict(stored.options)
        if _credential_keys(options):
            scrubbed = scrub_credentials(repo)
            raise RemoteConfigError(
                f"remote {stored.name} had credentials stored in the catalog in plain text by an older modelhub; they "
                f"were removed (from {len(scrubbed)} remote(s), the catalog file and its backups): {_CREDENTIALS_HINT}, "
                "then run the command again")
        return RemoteConfig(stored.name, stored.url, options)
    if allow_url and ("/" in name_or_url or "://" in name_or_url):
        return RemoteConfig(name_or_url, canonical_url(name_or_url), {})
    known = ", ".join(names) if names else "none configured"
    raise UnknownRemoteError(
        f"unknown remote {name_or_url!r} (known: {known}); add it with `dlv remote add {name_or_url} URL`")


def open_remote(repo, name_or_url: str) -> RemoteStore:
    cfg = get_remote(repo, name_or_url)
    return open_store(cfg.name, cfg.url, cfg.options)
