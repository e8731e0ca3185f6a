"""What a query returns: rows and columns, plus derived graphs or an evaluate spec."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Iterator

from ..netdef.graph import Graph
from ..tables import render as render_table

if TYPE_CHECKING:
    from ..engine.spec import EvaluateSpec


class ResultKind(str, Enum):
    """Which statement produced a result. A str, so ``result.kind == "select"`` and JSON
    output keep working; printed, it is its value."""
    SELECT = "select"
    SLICE = "slice"
    CONSTRUCT = "construct"
    EVALUATE = "evaluate"
    EXPLAIN = "explain"
    SAVE = "save"

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


@dataclass(frozen=True)
class DerivedGraph:
    """A network produced by slice/construct from one source version."""
    source_id: str
    source_name: str
    source_seq: int
    graph: Graph
    operation: ResultKind   # SLICE | CONSTRUCT


@dataclass(frozen=True)
class QueryResult:
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    kind: ResultKind = ResultKind.SELECT
    text: str = ""          # explain output or a one-line message
    graphs: tuple[DerivedGraph, ...] = ()
    spec: EvaluateSpec | None = None                  # evaluate: what was run
    committed: tuple[str, ...] = field(default=())   # version ids created by --commit
    stats: tuple[dict, ...] = ()                      # evaluate: reuse statistics per dataset (engine ReuseStats)
    skipped: tuple[tuple[str, str], ...] = ()          # slice/construct: (source NAME@N, why) per skipped version

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.rows)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r)) for r in self.rows]

    def df(self):
        """The rows as a pandas DataFrame, one column per result column (pandas is an optional
        extra: ``pip install 'modelhub[pandas]'``); ``to_dicts()`` needs nothing."""
        try:
            import pandas as pd
        except ImportError:
            from .errors import ExecutionError
            raise ExecutionError("df() needs pandas, which is not installed; pip install pandas, "
                                 "or use .rows / .to_dicts()") from None
        return pd.DataFrame(list(self.rows), columns=list(self.columns))

    def to_json(self) -> str:
        # rows as objects keyed by column, the shape every other `dlv ... --json` prints (issue 15);
        # "columns" keeps their order
        payload: dict[str, Any] = {"kind": self.kind, "columns": list(self.columns),
                                   "rows": [{c: _jsonable(v) for c, v in zip(self.columns, r)} for r in self.rows]}
        if self.text:
            payload["text"] = self.text
        if self.committed:
            payload["committed"] = list(self.committed)
        if self.stats:
            payload["stats"] = list(self.stats)
        if self.skipped:
            payload["skipped"] = [{"source": src, "reason": why} for src, why in self.skipped]
        return json.dumps(payload, indent=None, sort_keys=False)

    def format_table(self, max_width: int = 48) -> str:
        return format_table(self.columns, self.rows, max_width) if self.columns else self.text

    def table_cells(self, max_width: int = 48) -> tuple[list[list[str]], tuple[int, ...], str]:
        """(rows as display strings, numeric column indexes, row-count footer): the table that
        :meth:`format_table` lays out, for a renderer of its own (the CLI's, in colour)."""
        return table_cells(self.columns, self.rows, max_width)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    return v


def format_cell(v: Any, max_width: int = 48) -> str:
    if v is None:
        s = "NULL"
    elif isinstance(v, datetime):
        s = v.isoformat(sep=" ", timespec="seconds")
    elif isinstance(v, float):
        s = f"{v:.6g}"
    elif isinstance(v, bool):
        s = "true" if v else "false"
    elif isinstance(v, (list, dict)):
        s = json.dumps(v)
    else:
        s = str(v)
    if len(s) in (64, 80) and all(c in "0123456789abcdef" for c in s):
        s = s[:12]           # version ids and hashes: a unique-enough prefix, like dlv log
    return s if len(s) <= max_width else s[: max_width - 1] + "…"


def table_cells(columns: tuple[str, ...], rows: tuple[tuple, ...], max_width: int = 48,
                ) -> tuple[list[list[str]], tuple[int, ...], str]:
    """Rows as display strings, the numeric columns (right-aligned) and the row-count footer:
    what both the plain text below and the CLI's coloured table show."""
    cells = [[format_cell(v, max_width) for v in r] for r in rows]
    numeric = tuple(i for i in range(len(columns)) if rows and all(
        isinstance(r[i], (int, float)) and not isinstance(r[i], bool) or r[i] is None for r in rows))
    return cells, numeric, f"({len(rows)} row{'s' if len(rows) != 1 else ''})"


def format_table(columns: tuple[str, ...], rows: tuple[tuple, ...], max_width: int = 48) -> str:
    cells, numeric, footer = table_cells(columns, rows, max_width)
    return "\n".join([*render_table(list(columns), cells, align_right=numeric), footer])
