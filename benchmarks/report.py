"""How a benchmark hands over its figures: JSON on stdout, and in a file when asked (--out)."""
from __future__ import annotations

import json
from pathlib import Path


def print_report(report: dict, out: Path | None = None) -> None:
    text = json.dumps(report, indent=1)
    if out:
        Path(out).write_text(text + "\n")
    print(text)
