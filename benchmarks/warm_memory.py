"""Warm memory before a timed step, so that steps are timed alike on a VM that lends its memory lazily.

On a VM whose host takes back the guest's free memory (virtio-balloon free page reporting, as on this
project's machines: from ~2 s after it is freed, all of it by ~10 s), memory that was not just freed is
first written at ~0.65 GB/s, against ~2.7 GB/s just after it was freed (6 GB touched, freed, and touched
again at once, after 3, 10 and 20 s idle: 1.84, 1.30, 0.65, 0.64 GB/s). A timed step then pays, or
not, for every page it allocates (a checkout's output on tmpfs among them) according to what ran before
it: in benchmarks/streaming.py whichever of ``dlv`` and the API went first in a repeat checked out the
1.16 GB smoke test at 745-789 MB/s, the other at 1,129-1,700. ``warm(n)`` touches n bytes of fresh
memory and gives them back just before the clock starts, for every step alike, baselines included.
"""
from __future__ import annotations

import mmap

import numpy as np


def warm(nbytes: int) -> None:
    """Write one byte per page of ``nbytes`` of new anonymous memory, then unmap it."""
    if nbytes <= 0:
        return
    with mmap.mmap(-1, nbytes) as m:
        pages = np.frombuffer(m, dtype=np.uint8)
        pages[::mmap.PAGESIZE] = 1
        del pages   # no export may outlive the mapping's close
