"""storage/buffers.py: the decoders' result buffers."""
from __future__ import annotations

import numpy as np
import pytest

from modelhub.storage import buffers


@pytest.mark.parametrize("n", [0, 1, 7, 1 << 20])
def test_an_unset_bytearray_has_the_length_asked_for_and_takes_writes(n):
    out = buffers.unset_bytearray(n)
    assert type(out) is bytearray and len(out) == n
    view = np.frombuffer(out, dtype=np.uint8)
    view[:] = 0xA5                              # writable through the buffer protocol, as the decoders fill it
    assert out == b"\xa5" * n


def test_without_the_c_api_it_is_a_plain_zeroed_bytearray(monkeypatch):
    monkeypatch.setattr(buffers, "_NEW", None)
    assert buffers.unset_bytearray(5) == bytearray(5)
