"""Parameter archive and object store.

This package is imported as ``modelhub.storage`` but never imports modelhub: it
depends on numpy and zstandard only, so it can be reused (and reasoned about)
on its own. Errors raised here derive from :class:`StorageError`; the repository
layer translates them into modelhub's own error hierarchy.
"""
