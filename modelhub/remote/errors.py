"""Remote failures; all are :class:`modelhub.errors.RemoteError` (exit code 10).

Bytes that do not match their hash are an :class:`modelhub.errors.IntegrityError`
instead (exit code 65), wherever they came from.
"""
from __future__ import annotations

from ..errors import RefError, RemoteError


class RemoteConfigError(RemoteError):
    """Unknown remote name, malformed URL, missing optional dependency."""


class UnknownRemoteError(RemoteConfigError, RefError):
    """No remote of that name: exit code 3, as every other unknown name."""


class RemoteUnavailableError(RemoteError):
    """The remote cannot be reached or refuses the request (network, credentials, permissions)."""


class RemoteFormatError(RemoteError):
    """The remote holds something this client does not accept (unknown format, hostile rows)."""
