"""Bytes to and from a remote, through fsspec (local folders, s3fs for S3-compatible stores).

Only this module touches the remote's filesystem. It knows the layout
(``objects/ab/cdef...``, ``catalog/segments/NAME``, ``modelhub-remote.json``)
but nothing about catalogs. Every blob read is verified against its name and
its declared size before it is returned; every write is all-or-nothing (a
single PUT on object stores, temp file + rename on folders), so an
interrupted transfer never leaves a partial object under a real name.
"""
from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Mapping

from ..errors import IntegrityError, ModelhubError
from ..storage.atomic import atomic_write
from ..storage.objects import is_object_name, name_matches
from .errors import RemoteConfigError, RemoteFormatError, RemoteUnavailableError

#: version of the remote layout documented in docs/REMOTE.md
REMOTE_FORMAT = 1
HEADER_NAME = "modelhub-remote.json"
SEGMENT_DIR = "catalog/segments"
OBJECT_DIR = "objects"
#: <20-digit UTC timestamp>-<32 hex uuid>.json.zst -- anything else in the folder is ignored
SEGMENT_RE = re.compile(r"^[0-9]{20}-[0-9a-f]{32}\.json\.zst$")


def is_blob_name(name: object) -> bool:
    """Lowercase hex of a length some hash makes (storage.objects: 64 or 80 digits)."""
    return is_object_name(name)


def blob_path(blob_hash: str) -> str:
    if not is_blob_name(blob_hash):
        # Names come from remote rows: refusing anything but lowercase hex names
        # rules out path traversal on both sides.
        raise RemoteFormatError(f"invalid object name {blob_hash[:80]!r} in the remote's catalog; the remote is damaged or hostile, do not use it")
    return f"{OBJECT_DIR}/{blob_hash[:2]}/{blob_hash[2:]}"


class RemoteStore:
    """One remote's files. ``fs`` is an fsspec filesystem, ``root`` the path of the remote in it."""

    def __init__(self, name: str, url: str, fs: Any, root: str) -> None:
        self.name, self.url, self.fs, self.root = name, url, fs, root.rstrip("/")
        self._local = "file" in _protocols(fs)

    def __repr__(self) -> str:
        return f"RemoteStore({self.name!r}, {self.url!r})"

    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    @contextmanager
    def _io(self, what: str) -> Iterator[None]:
        """Turn transport exceptions (OSError, botocore, aiohttp...) into one-line RemoteErrors."""
        try:
            yield
        except ModelhubError:
            raise
        except FileNotFoundError as exc:
            raise RemoteUnavailableError(
                f"{what} on remote {self.name} ({self.url}) failed: not found ({_first_line(exc)}); "
                "check that the bucket or folder exists and the URL is right") from None
        except PermissionError as exc:
            raise RemoteUnavailableError(
                f"{what} on remote {self.name} ({self.url}) was refused ({_first_line(exc)}); "
                "check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and permissions"
            ) from None
        except Exception as exc:  # noqa: BLE001 - any transport failure becomes a RemoteError
            raise RemoteUnavailableError(
                f"{what} on remote {self.name} ({self.url}) failed ({type(exc).__name__}: {_first_line(exc)}); "
                "check the URL, the network, AWS_ENDPOINT_URL and the credentials, then retry"
            ) from None

    # -- header -----------------------------------------------------------------------
    def read_header(self) -> dict | None:
        with self._io("reading the header"):
            try:
                data = self.fs.cat_file(self._path(HEADER_NAME))
            except FileNotFoundError:
                return None
        try:
            header = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            header = None
        if not isinstance(header, dict) or header.get("format") != "modelhub-remote" or not isinstance(header.get("version"), int):
            raise RemoteFormatError(
                f"{self.url} holds a {HEADER_NAME} that is not a modelhub remote header; point the remote at another folder or bucket prefix")
        if header["version"] > REMOTE_FORMAT:
            raise RemoteFormatError(
                f"remote {self.name} uses remote format {header['version']} but this modelhub reads up to "
                f"{REMOTE_FORMAT}; upgrade modelhub (pip install -U modelhub)")
        return header

    def ensure_header(self) -> None:
        """Create the header on first publish. Two publishers may both write it: same bytes, no harm."""
        if self.read_header() is None:
            body = json.dumps({"format": "modelhub-remote", "version": REMOTE_FORMAT}, sort_keys=True).encode()
            self._write(HEADER_NAME, body)

    # -- catalog segments -------------------------------------------------------------------
    def list_segments(self) -> list[str]:
        """Names of every committed segment, oldest first (the names sort by creation time)."""
        with self._io("listing the catalog"):
            try:
                if hasattr(self.fs, "invalidate_cache"):
                    self.fs.invalidate_cache(self._path(SEGMENT_DIR))  # a stale listing would hide segments
                entries = self.fs.ls(self._path(SEGMENT_DIR), detail=False)
            except FileNotFoundError:
                return []
        names = {e.rstrip("/").rsplit("/", 1)[-1] for e in entries}
        return sorted(n for n in names if SEGMENT_RE.match(n))

    def read_segment(self, name: str, max_bytes: int | None = None) -> bytes:
        """A segment's (compressed) bytes; more than ``max_bytes`` is refused before it is read."""
        if not SEGMENT_RE.match(name):
            raise RemoteFormatError(f"invalid segment name {name[:80]!r}; the remote is damaged")
        with self._io(f"reading segment {name}"):
            try:
                if max_bytes is None:
                    return self.fs.cat_file(self._path(f"{SEGMENT_DIR}/{name}"))
                data = self.fs.cat_file(self._path(f"{SEGMENT_DIR}/{name}"), start=0, end=max_bytes + 1)
                if len(data) > max_bytes:
                    raise RemoteFormatError(
                        f"segment {name} on remote {self.name} is larger than {max_bytes} bytes; refusing it, the "
                        "remote is damaged or hostile (if you trust it, raise DLV_REMOTE_MAX_CATALOG_BYTES)")
                return data
            except FileNotFoundError:
                raise RemoteFormatError(
                    f"segment {name} disappeared from remote {self.name}; segments are immutable, "
                    "so someone deleted it by hand: restore it from a backup") from None

    def write_segment(self, name: str, data: bytes) -> None:
        if not SEGMENT_RE.match(name):
            raise ValueError(f"bad segment name {name!r}")
        self._write(f"{SEGMENT_DIR}/{name}", data)

    # -- blobs ----------------------------------------------------------------------------
    def has_blob(self, blob_hash: str) -> bool:
        with self._io("checking an object"):
            return bool(self.fs.exists(self._path(blob_path(blob_hash))))

    def put_blob(self, blob_hash: str, data: bytes) -> None:
        self._write(blob_path(blob_hash), data)

    def get_blob(self, blob_hash: str, size: int) -> bytes:
        """The blob's bytes, checked against the declared size and the hash in its name."""
        path = blob_path(blob_hash)
        with self._io(f"downloading object {blob_hash[:16]}"):
            try:
                # At most one byte more than declared is read: a blob swapped for a
                # huge (or sparse) file costs its declared size, not its real one.
                data = self.fs.cat_file(self._path(path), start=0, end=int(size) + 1)
            except FileNotFoundError:
                raise IntegrityError(
                    f"remote {self.name} lacks object {blob_hash[:16]} that its catalog references; "
                    f"run `dlv publish {self.name} REF --repair` from a repository that has the version") from None
        if len(data) != size:
            found = f"more than {size} bytes" if len(data) > size else f"{len(data)} bytes"
            raise IntegrityError(
                f"object {blob_hash[:16]} on remote {self.name} has {found} but the catalog declares {size}; "
                f"the remote copy is damaged: run `dlv publish {self.name} REF --repair` from a repository that has the version")
        if not name_matches(blob_hash, data):
            raise IntegrityError(
                f"object {blob_hash[:16]} on remote {self.name} does not match its hash (corrupted); "
                f"run `dlv publish {self.name} REF --repair` from a repository that has the version")
        return data

    # -- writes -----------------------------------------------------------------------------
    def _write(self, rel: str, data: bytes) -> None:
        path = self._path(rel)
        with self._io(f"writing {rel}"):
            if not self._local:
                self.fs.pipe_file(path, data)  # one PUT: the object appears whole or not at all
                return
            # Folders: temp file + fsync + rename (storage.atomic), so a crash
            # never leaves a partial file under the real name.
            atomic_write(path, data)


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = getattr(fs, "protocol", ())
    return (proto,) if isinstance(proto, str) else tuple(proto)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


# -- opening a URL -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemoteLocation:
    """Where a remote lives: ``protocol`` 'file' with an absolute folder ``path``, or 's3' with 'bucket/prefix'."""

    protocol: Literal["file", "s3"]
    path: str

    @property
    def is_folder(self) -> bool:
        return self.protocol == "file"

    @property
    def url(self) -> str:
        """The canonical URL (what the catalog stores): the folder path, or s3://bucket/prefix."""
        return f"s3://{self.path}" if self.protocol == "s3" else self.path


def parse_url(url: str) -> RemoteLocation:
    """The location a remote URL names (a folder path, file:///path or s3://bucket/prefix)."""
    if not isinstance(url, str) or not url.strip():
        raise RemoteConfigError("empty remote URL; give a folder path or s3://bucket/prefix")
    url = url.strip()
    if url.startswith("s3://"):
        path = url[len("s3://"):].strip("/")
        bucket = path.split("/", 1)[0]
        if not bucket or not re.match(r"^[a-z0-9][a-z0-9.\-]{1,62}$", bucket):
            raise RemoteConfigError(f"{url!r} does not name a valid S3 bucket; use s3://bucket/prefix")
        if any(part in ("", ".", "..") for part in path.split("/")):
            raise RemoteConfigError(f"{url!r} has an empty, '.' or '..' path part; use s3://bucket/prefix")
        return RemoteLocation("s3", path)
    if url.startswith("file://"):
        url = url[len("file://"):]
    elif "://" in url:
        raise RemoteConfigError(
            f"unsupported remote URL {url!r}; use a folder path, file:///path or s3://bucket/prefix")
    return RemoteLocation("file", os.path.abspath(os.path.expanduser(url)))


def canonical_url(url: str) -> str:
    return parse_url(url).url


def open_store(name: str, url: str, options: Mapping[str, Any] | None = None) -> RemoteStore:
    location = parse_url(url)
    path = location.path
    options = dict(options or {})
    if location.is_folder:
        import fsspec

        return RemoteStore(name, path, fsspec.filesystem("file"), path)
    try:
        import s3fs  # noqa: F401 - optional dependency, checked here for a clear message
    except ImportError:
        raise RemoteConfigError(
            f"remote {name} is on S3 but s3fs is not installed; pip install 'modelhub[s3]'") from None
    import fsspec

    return RemoteStore(name, f"s3://{path}", fsspec.filesystem("s3", **s3_options(options)), path)


def s3_options(options: Mapping[str, Any]) -> dict:
    """fsspec/s3fs options: the remote's stored config, then the usual AWS environment variables.

    Credentials left unset are found by botocore itself (environment, profile,
    instance role); only the endpoint is filled in here because older
    botocore releases ignore AWS_ENDPOINT_URL.
    """
    opts: dict[str, Any] = {k: v for k, v in options.items() if k not in ("endpoint_url", "region")}
    endpoint = options.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    client_kwargs = dict(opts.pop("client_kwargs", {}) or {})
    if endpoint:
        opts["endpoint_url"] = endpoint
    region = options.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        client_kwargs.setdefault("region_name", region)
    if client_kwargs:
        opts["client_kwargs"] = client_kwargs
    # Listings must never come from a cache: a stale list of segments would hide versions.
    opts.setdefault("use_listings_cache", False)
    return opts
