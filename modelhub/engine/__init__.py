"""PyTorch execution: evaluate/train with frozen-prefix materialization and reuse.

Entry points: :func:`run_evaluate` (DQL `evaluate`), :func:`run_selection`
(the library core over plain modules and arrays) and :func:`evaluate_version`
(`dlv eval`). See docs/ENGINE.md.
"""
from __future__ import annotations

from ..lazy import lazy_exports

# Exported lazily (PEP 562): the query language imports engine.spec (plain dataclasses) for
# every query, and a select must not pay for importing torch through evaluate/selection.
_EXPORTS = {
    "EvaluateResult": ".evaluate", "EvalReport": ".evaluate", "evaluate_version": ".evaluate",
    "expand_auto": ".evaluate", "run_evaluate": ".evaluate",
    "CandidateModel": ".selection", "SelectionResult": ".selection", "run_selection": ".selection",
}

__all__ = ["run_evaluate", "run_selection", "evaluate_version", "expand_auto", "EvaluateResult",
           "EvalReport", "CandidateModel", "SelectionResult"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
