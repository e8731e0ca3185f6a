"""Repository settings: the names `dlv config` knows, their defaults, and how each is checked.

Values are stored as the user wrote them (catalog/settings.py) and parsed on
use, so `dlv config NAME` shows them back unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import duckdb

from ..catalog import settings as catalog_settings
from ..errors import InputError
from ..sizes import parse_size
from .records import Record

#: default cap on all hot copies together: small models keep a fast checkout, while a
#: large model (whose archive saves gigabytes) does not silently get an uncompressed
#: second copy; `dlv stats` shows the footprint with and without hot copies
DEFAULT_HOT_MAX_BYTES = 1 << 30
_UNLIMITED = ("none", "unlimited", "off")


def parse_hot_max_bytes(text: str) -> int | None:
    """'2G' -> bytes; 'none' -> no cap; '0' -> no hot copies."""
    if text.strip().lower() in _UNLIMITED:
        return None
    try:
        return parse_size(text)
    except InputError:
        raise InputError(f"hotcopy.max_bytes {text!r} is not a size; write bytes or a number with K, M, G or T "
                         "(e.g. 2G), 0 for no hot copies, or 'none' for no cap") from None


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    check: Callable[[str], object]


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("hotcopy.max_bytes", "1G",
            "disk that hot copies (uncompressed latest versions, for fast checkout) may take in all; "
            "a version larger than this gets none; 0: no hot copies; none: no cap "
            "(DLV_HOT_MAX_BYTES overrides it)", parse_hot_max_bytes),
)}


@dataclass(frozen=True)
class SettingValue(Record):
    name: str
    value: str
    is_default: bool
    help: str


def _known(name: str) -> Setting:
    setting = SETTINGS.get(name)
    if setting is None:
        raise InputError(f"unknown setting {name!r}; known settings: {', '.join(sorted(SETTINGS))}")
    return setting


def get_setting(con: duckdb.DuckDBPyConnection, name: str) -> SettingValue:
    setting = _known(name)
    stored = catalog_settings.get(con, name)
    return SettingValue(name, setting.default if stored is None else stored, stored is None, setting.help)


def all_settings(con: duckdb.DuckDBPyConnection) -> list[SettingValue]:
    return [get_setting(con, name) for name in sorted(SETTINGS)]


def set_setting(con: duckdb.DuckDBPyConnection, name: str, value: str | None) -> SettingValue:
    """Store ``value`` (checked first); None restores the default."""
    setting = _known(name)
    if value is None:
        catalog_settings.delete(con, name)
    else:
        setting.check(value)
        catalog_settings.put(con, name, value.strip())
    return get_setting(con, name)


def hot_max_bytes(con: duckdb.DuckDBPyConnection) -> int | None:
    """The hot copy cap in force: ``DLV_HOT_MAX_BYTES`` when set, else the repository's setting."""
    from . import hotcopy
    env = hotcopy.env_max_bytes()
    if env is not hotcopy.UNSET:
        return env
    stored = catalog_settings.get(con, "hotcopy.max_bytes")
    return DEFAULT_HOT_MAX_BYTES if stored is None else parse_hot_max_bytes(stored)
