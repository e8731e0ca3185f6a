"""Golden-file format for DQL tests (shared by test_dql_golden.py).

Each file holds cases:

    === name
    <query text, one or more lines>
    --- expected
    <expected text>

Regenerate the expected sections after an intended change with
    DQL_GOLDEN_UPDATE=1 python -m pytest tests/test_dql_golden.py
and review the diff before committing.
"""
from __future__ import annotations

import re
from pathlib import Path

GOLDEN_DIR = Path(__file__).parent / "golden" / "dql"


def read_cases(path: Path) -> list[tuple[str, str, str]]:
    text = path.read_text()
    cases = []
    for block in re.split(r"^=== ", text, flags=re.M)[1:]:
        head, _, rest = block.partition("\n")
        query, _, expected = rest.partition("--- expected\n")
        cases.append((head.strip(), query.rstrip("\n"), expected.rstrip("\n")))
    return cases


def write_cases(path: Path, cases: list[tuple[str, str, str]]) -> None:
    out = []
    for name, query, expected in cases:
        out.append(f"=== {name}\n{query}\n--- expected\n{expected}\n")
    path.write_text("\n".join(out))
