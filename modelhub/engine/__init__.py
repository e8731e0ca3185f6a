"""PyTorch execution: evaluate/train with frozen-prefix materialization and reuse.

Entry points: :func:`run_evaluate` (DQL `evaluate`), :func:`run_selection`
(the library core over plain modules and arrays) and :func:`evaluate_version`
(`dlv eval`). See docs/ENGINE.md.
"""
from __future__ import annotations

from .evaluate import EvaluateResult, EvalReport, evaluate_version, expand_auto, run_evaluate
from .selection import CandidateModel, SelectionResult, run_selection

__all__ = ["run_evaluate", "run_selection", "evaluate_version", "expand_auto", "EvaluateResult",
           "EvalReport", "CandidateModel", "SelectionResult"]
