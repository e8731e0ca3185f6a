"""Reusable buffers for the temporaries of encoding a tensor (its field planes, packed codes).

Why: a commit splits every tensor into field planes, packs and codes them; each step wrote into
freshly allocated memory (about 3x the tensor's element count in bytes for bfloat16). glibc maps
such large arrays anew for each tensor and unmaps them after, so the kernel faults in and zeroes
every page again: in a ``dlv commit`` of a 1.16 GB bfloat16 checkpoint, ``clear_page`` alone was
10% of the process's CPU samples (perf), plus the page faults around it.

An :class:`EncodeScratch` hands out page-aligned arrays from a :class:`~.directio.BufferPool`,
shared by the threads of one commit; :meth:`EncodeScratch.release` gives them back once the
tensor's blobs (which may be views of them) are written. A blob that lies in such a buffer is
also written past the page cache without first being copied into an aligned one
(``directio.write_whole``). A buffer still in use when it is given back (an array made from it
outlived the tensor) is not reused until its last user lets go.
"""
from __future__ import annotations

import numpy as np

from .directio import BufferPool

#: idle bytes a commit's scratch pool keeps for the next tensors (the largest tensors' planes)
SCRATCH_KEEP_BYTES = 256 << 20
#: tensors below this size encode without a scratch: malloc serves their temporaries from memory
#: it keeps (its large allocations, from 128 KB up, are the ones it maps afresh each time)
SCRATCH_MIN_BYTES = 1 << 20


class EncodeScratch:
    """The buffers of one tensor's encode, from ``pool``; one per thread (not thread-safe)."""

    def __init__(self, pool: BufferPool) -> None:
        self._pool = pool
        self._taken: list = []

    def empty(self, nbytes: int) -> np.ndarray:
        """``nbytes`` uninitialised bytes (uint8), page-aligned."""
        array = self._pool.take(max(int(nbytes), 1))
        self._taken.append(array)
        return array[:nbytes]

    def release(self) -> None:
        """Give every buffer back: each is reused once no array or blob made from it is left."""
        taken, self._taken = self._taken, []
        for array in taken:
            self._pool.give(array)
