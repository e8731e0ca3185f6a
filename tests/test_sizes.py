"""One size parser (modelhub/sizes.py): "500M" is the same number of bytes in every place that reads a size."""
from __future__ import annotations

import pytest

from modelhub.cli.cmd_archive import parse_size as archive_budget
from modelhub.engine.config import parse_size as config_size
from modelhub.engine.errors import ConfigError
from modelhub.errors import InputError
from modelhub.repo import hotcopy
from modelhub.sizes import parse_size

MIB = 1024**2


@pytest.mark.parametrize(("text", "expected"), [
    ("500M", 500 * MIB), ("500MB", 500 * MIB), ("500MiB", 500 * MIB), ("500mb", 500 * MIB), ("500Mi", 500 * MIB),
    ("1T", 1024**4), ("1TB", 1024**4), ("2g", 2 * 1024**3), ("1.5K", 1536), ("800k", 800 * 1024),
    ("1048576", 1048576), ("0", 0), ("5B", 5), (" 2 GiB ", 2 * 1024**3),
])
def test_every_reader_agrees(monkeypatch, text: str, expected: int) -> None:
    monkeypatch.setenv("DLV_HOT_MAX_BYTES", text)
    assert parse_size(text) == archive_budget(text) == config_size(text) == hotcopy.max_bytes() == expected


@pytest.mark.parametrize("text", ["lots", "-1", "5iB", "1P", "M", "1.2.3"])
def test_every_reader_refuses_the_same_texts(monkeypatch, text: str) -> None:
    with pytest.raises(InputError, match="is not understood"):
        parse_size(text)
    with pytest.raises(InputError, match="is not a size"):
        archive_budget(text)
    with pytest.raises(ConfigError, match="write a size such as"):
        config_size(text)
    monkeypatch.setenv("DLV_HOT_MAX_BYTES", text)
    with pytest.raises(InputError, match="DLV_HOT_MAX_BYTES"):
        hotcopy.max_bytes()
