"""How an error reaches the user: one line on stderr, or one JSON object under --json."""
from __future__ import annotations

import json


def report_error(ui, message: str, code: int, kind: str) -> int:
    """Print the error (``kind``: the error class name, e.g. 'RefError', or 'UsageError') and return ``code``.

    Under --json, stderr holds exactly one object: {"error": {"message", "code", "kind"}}.
    """
    if ui.json_mode:
        ui.warn(json.dumps({"error": {"message": message, "code": code, "kind": kind}}))
    else:
        ui.warn(f"error: {message}")
    return code
