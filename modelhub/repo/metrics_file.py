"""Metrics from a JSON-lines file, as training scripts write them (`dlv commit --metrics-file`).

Public so that Python callers read the same files the same way::

    from modelhub.repo import load_metrics_file
    repo.commit(model, name="lenet", message="run 7", metrics=load_metrics_file("train.jsonl"))

Each non-empty line is one record, either one point of one metric
``{"name": "loss", "step": 2, "value": 0.7}`` or several metrics at one step
``{"step": 2, "loss": 0.7, "acc": 0.81}``. A record without ``step`` is at
step (line number - 1). The result is what ``Repo.commit(metrics=...)``
takes: ``{name: [(step, value), ...]}``.

Values given without a step next to such a file (``dlv commit --metric val_acc=0.91
--metrics-file train.jsonl``) are final values: ``with_final_values`` places them after
the file's last step, so they never collide with the file's points and are what
queries see as the metric's latest value.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

from ..errors import InputError

MetricSeries = dict[str, list[tuple[int, float]]]


def load_metrics_file(path: str | os.PathLike,
                      base: Mapping[str, Sequence[tuple[int, float]]] | None = None) -> MetricSeries:
    """The metric series in the JSONL file ``path``, appended to copies of the series in ``base``.

    ``base`` holds points given another way (the command line's ``--metric``);
    a step that ``base`` or an earlier line already has for the same metric is
    refused, as is a line that is not a metrics record (InputError naming
    ``path:line``).
    """
    series: MetricSeries = {name: list(points) for name, points in (base or {}).items()}
    path = Path(path)
    if not path.is_file():
        raise InputError(f"metrics file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"metrics file {path} is not UTF-8 text; convert it (iconv -t UTF-8)") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if "name" in rec and "value" in rec:
                pairs = [(rec["name"], rec["value"])]
            else:
                pairs = [(k, v) for k, v in rec.items() if k != "step"]
            step = int(rec.get("step", lineno - 1))
            for name, value in pairs:
                v = float(value)
                if not isinstance(name, str):
                    raise ValueError
                points = series.setdefault(name, [])
                if any(s == step for s, _ in points):
                    raise InputError(f"{path}:{lineno}: metric {name!r} has step {step} twice")
                points.append((step, v))
        # every way a line can fail to be a record: not JSON, not an object, a value that is no number
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
            raise InputError(
                f'{path}:{lineno} is not a metrics record; write {{"name": "loss", "step": 1, "value": 0.5}} '
                'or {"step": 1, "loss": 0.5}'
            ) from None
    return series


def with_final_values(series: Mapping[str, Sequence[tuple[int, float]]],
                      finals: Mapping[str, Sequence[float]]) -> MetricSeries:
    """``series`` plus ``finals`` (values without a step, in order) after its last step.

    Every final value comes after all of ``series`` (the run a metrics file logs): the
    first value of each name at the step following the highest step of any metric in
    ``series`` (0 when it is empty), a repeated name at the steps after that. So a final
    value is the latest point of its metric and never lands on a step the file gives.
    """
    out: MetricSeries = {name: list(points) for name, points in series.items()}
    first = max((step for points in series.values() for step, _ in points), default=-1) + 1
    for name, values in finals.items():
        out.setdefault(name, []).extend((first + i, float(v)) for i, v in enumerate(values))
    return out
