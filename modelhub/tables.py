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


def width_of(text: str) -> int:
    """Terminal cells of ``text``; ASCII (most cells: ids, numbers, dates) is one cell a character,
    and asking rich only for the rest keeps a 1,000-row `dlv log` fast."""
    return len(text) if text.isascii() else cell_len(text)


def pad(text: str, width: int, *, right: bool = False) -> str:
    """``text`` padded with spaces to ``width`` terminal cells (on the left when ``right``)."""
    fill = " " * max(0, width - width_of(text))
    return fill + text if right else text + fill


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], *, align_right: Sequence[int] = ()) -> list[str]:
    """Lines of the table (without a row count); ``rows`` hold strings already formatted."""
    sized = [[(c, width_of(c)) for c in r] for r in [headers, *rows]]
    widths = [0] * len(headers)
    for r in sized:
        for i, (_, w) in enumerate(r):
            if w > widths[i]:
                widths[i] = w
    right = set(align_right)

    def line(cells: Sequence[tuple[str, int]]) -> str:
        return "  ".join(" " * (widths[i] - w) + c if i in right else c + " " * (widths[i] - w)
                         for i, (c, w) in enumerate(cells)).rstrip()

    return [line(sized[0]), "  ".join("-" * w for w in widths), *(line(r) for r in sized[1:])]
