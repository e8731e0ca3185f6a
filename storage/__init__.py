"""Parameter archive and object store.

This package is imported as ``modelhub.storage`` but never imports modelhub: it
depends on numpy, zstandard and blake3 only, so it can be reused (and reasoned about)
on its own. Importing it starts nothing (decode threads start with the first
large decode). Errors raised here derive from :class:`StorageError` and speak
of objects, manifests and codecs only; modelhub translates them into its own
error hierarchy in one place, ``modelhub/storage_boundary.py``.

Module layering (no import cycles, tests/test_storage_isolation.py): errors and
dtypes are leaves; codecs is the codec contract and registry; whole and
segmented are codecs that register themselves; tensors is the entry point
(encode/decode any tensor, importing the built-in codecs); progressive reads
bounds from segmented manifests; plan is pure graph computation.
"""
