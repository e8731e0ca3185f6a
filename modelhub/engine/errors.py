"""Engine failures. Each message says what went wrong and how to fix it."""
from __future__ import annotations

from ..errors import DataError, EngineError


class ConfigError(EngineError):
    """An evaluate config is missing, unreadable or has a bad value."""


class SplitError(EngineError):
    """A network cannot be cut into a chain of stages for prefix reuse."""


class FeatureStoreError(EngineError):
    """A materialized feature chunk is missing, corrupt or does not fit."""


class ExtractionMemoryError(EngineError):
    """Extraction ran out of memory even with a batch of one record."""


class DatasetError(DataError):
    """A versioned dataset is missing, malformed or cannot be appended to."""


class BackendError(EngineError):
    """An execution backend (Ray) is not installed, unreachable or failed."""
