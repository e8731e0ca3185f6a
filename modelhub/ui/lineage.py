"""The lineage graph of a model as SVG: versions in columns by depth, parent -> child arrows.

Drawn on the server (no graph library in the browser): column = longest path
from a root, rows in commit order within a column. Each box links to its
version's page.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Sequence

from ..catalog.browse import VersionListing

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 150, 44, 60, 18, 12

STATE_CLASS = {"finished": "ok", "failed": "bad", "running": "live", "unfinished": "warn"}


@dataclass(frozen=True)
class Placed:
    row: VersionListing
    x: int
    y: int


def layout(rows: Sequence[VersionListing], edges: Sequence[tuple[str, str]]) -> list[Placed]:
    ids = {r.id for r in rows}
    parents: dict[str, list[str]] = {}
    for p, c in edges:
        if p in ids and c in ids:
            parents.setdefault(c, []).append(p)
    depth: dict[str, int] = {}
    for r in sorted(rows, key=lambda r: r.created_at):  # parents are always older than their children
        depth[r.id] = 1 + max((depth.get(p, 0) for p in parents.get(r.id, ())), default=-1)
    columns: dict[int, list[VersionListing]] = {}
    for r in sorted(rows, key=lambda r: (r.created_at, r.model, r.seq)):
        columns.setdefault(depth[r.id], []).append(r)
    return [
        Placed(r, PAD + d * (BOX_W + GAP_X), PAD + i * (BOX_H + GAP_Y))
        for d, col in sorted(columns.items()) for i, r in enumerate(col)
    ]


def render_svg(rows: Sequence[VersionListing], edges: Sequence[tuple[str, str]], *, focus_model: str,
               href: callable) -> str:
    placed = layout(rows, edges)
    if not placed:
        return ""
    at = {p.row.id: p for p in placed}
    width = max(p.x for p in placed) + BOX_W + PAD
    height = max(p.y for p in placed) + BOX_H + PAD
    parts = [
        f'<svg class="lineage" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="lineage of {escape(focus_model)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"/></marker></defs>',
    ]
    for p, c in edges:
        if p in at and c in at:
            a, b = at[p], at[c]
            x1, y1 = a.x + BOX_W, a.y + BOX_H // 2
            x2, y2 = b.x, b.y + BOX_H // 2
            mid = (x1 + x2) // 2
            parts.append(f'<path class="edge" data-from="{p}" data-to="{c}" '
                         f'd="M {x1} {y1} C {mid} {y1}, {mid} {y2}, {x2} {y2}" marker-end="url(#arrow)"/>')
    for p in placed:
        r = p.row
        state = r.run.state if r.run else None
        classes = " ".join(filter(None, ["node", "other" if r.model != focus_model else "",
                                         STATE_CLASS.get(state or "", "")]))
        title = escape(f"{r.ref}: {r.message}" + (f" [run {state}]" if state else ""))
        parts.append(
            f'<a href="{escape(href(r))}"><g class="{classes}" data-version="{r.id}">'
            f'<title>{title}</title>'
            f'<rect x="{p.x}" y="{p.y}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
            f'<text x="{p.x + 8}" y="{p.y + 18}" class="ref">{escape(_cut(r.ref, 20))}</text>'
            f'<text x="{p.x + 8}" y="{p.y + 35}" class="msg">{escape(_cut(r.message, 22))}</text>'
            '</g></a>')
    parts.append("</svg>")
    return "".join(parts)


def _cut(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
