"""Progressive-inference failures. Each message says what went wrong and how to fix it."""
from __future__ import annotations

from ..errors import EngineError


class ProgressiveError(EngineError):
    """Base of every progressive-inference failure."""


class UnsupportedLayerError(ProgressiveError):
    """A layer of the network has no sound bound rule (the caller may fall back to full precision)."""


class ProgressiveInputError(ProgressiveError):
    """The records or the options given to a progressive query are unusable."""


class WeightSourceError(ProgressiveError):
    """A parameter tensor cannot be read progressively or exactly."""
