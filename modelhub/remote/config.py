"""The repository's list of remotes (catalog table ``remotes``) and opening one.

Adding a remote does not contact it (like ``git remote add``): the first
publish creates its layout. Options are fsspec storage options stored as
JSON (for S3: endpoint_url, region, key, secret, ...); values of keys that
look like credentials are masked when listed.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..repo.records import Record
from .errors import RemoteConfigError
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


def add_remote(repo, name: str, url: str, options: Mapping[str, Any] | None = None) -> RemoteConfig:
    check_remote_name(name)
    url = canonical_url(url)
    opts = dict(options or {})
    if parse_url(url)[0] == "file" and opts:
        raise RemoteConfigError("folder remotes take no options; drop --option/--endpoint-url or use an s3:// URL")
    if parse_url(url)[0] == "file" and (url + "/").startswith(str(repo.paths.dlv) + "/"):
        raise RemoteConfigError(f"{url} is inside this repository's .dlv folder; give a folder outside it, e.g. ../hub")
    with repo.catalog.write() as con:
        if con.execute("SELECT 1 FROM remotes WHERE name = ?", [name]).fetchone():
            raise RemoteConfigError(f"remote {name!r} already exists; remove it first with `dlv remote remove {name}`")
        con.execute("INSERT INTO remotes (name, url, config) VALUES (?, ?, ?)", [name, url, json.dumps(opts, sort_keys=True)])
    return RemoteConfig(name, url, opts)


def list_remotes(repo) -> list[RemoteConfig]:
    with repo.catalog.read() as con:
        rows = con.execute("SELECT name, url, config FROM remotes ORDER BY name").fetchall()
    return [RemoteConfig(n, u, json.loads(c)) for n, u, c in rows]


def remove_remote(repo, name: str) -> RemoteConfig:
    cfg = get_remote(repo, name, allow_url=False)
    with repo.catalog.write() as con:
        con.execute("DELETE FROM remotes WHERE name = ?", [name])
    return cfg


def get_remote(repo, name_or_url: str, *, allow_url: bool = True) -> RemoteConfig:
    """A configured remote by name; with ``allow_url`` a folder path or s3:// URL works directly."""
    with repo.catalog.read() as con:
        row = con.execute("SELECT name, url, config FROM remotes WHERE name = ?", [name_or_url]).fetchone()
        names = [r[0] for r in con.execute("SELECT name FROM remotes ORDER BY name").fetchall()]
    if row:
        return RemoteConfig(row[0], row[1], json.loads(row[2]))
    if allow_url and ("/" in name_or_url or "://" in name_or_url):
        return RemoteConfig(name_or_url, canonical_url(name_or_url), {})
    known = ", ".join(names) if names else "none configured"
    raise RemoteConfigError(
        f"unknown remote {name_or_url!r} (known: {known}); add it with `dlv remote add {name_or_url} URL`")


def open_remote(repo, name_or_url: str) -> RemoteStore:
    cfg = get_remote(repo, name_or_url)
    return open_store(cfg.name, cfg.url, cfg.options)
