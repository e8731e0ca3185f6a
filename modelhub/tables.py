"""The one table layout of dlv, as plain text: a header, a line of dashes, rows.

Columns are two spaces apart and sized in terminal cells (``rich.cells.cell_len``),
so wide characters (CJK model names, emoji in messages) stay aligned. This is
what `dlv` prints when its output is piped or redirected, and what
``QueryResult.format_table()`` returns; on a terminal the CLI draws the same
table with colour through rich (modelhub/cli/ui.py). A leaf module (it imports
no modelhub package) so that the query language and the CLI share it.
"""
from __future__ import annotations

from typing import Sequence

from rich.cells import cell_len  # light: rich's width tables only, not its console


def pad(text: str, width: int, *, right: bool = False) -> str:
    """``text`` padded with spaces to ``width`` terminal cells (on the left when ``right``)."""
    fill = " " * max(0, width - cell_len(text))
    return fill + text if right else text + fill


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], *, align_right: Sequence[int] = ()) -> list[str]:
    """Lines of the table (without a row count); ``rows`` hold strings already formatted."""
    widths = [cell_len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], cell_len(c))
    right = set(align_right)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(pad(c, widths[i], right=i in right) for i, c in enumerate(cells)).rstrip()

    return [line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]
