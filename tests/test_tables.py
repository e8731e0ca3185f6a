"""One table renderer (modelhub/tables.py, drawn by cli/ui.py): plain text when piped, colour
on a terminal, columns measured in terminal cells so wide characters stay aligned."""
from __future__ import annotations

import io

from rich.cells import cell_len

from modelhub.cli.ui import UI
from modelhub.dql.result import format_table


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_piped_tables_keep_their_plain_layout() -> None:
    out = io.StringIO()
    UI(out=out).table(["ref", "n", "message"], [("net@2", 12, "second"), ("net@1", None, "first")], align_right=(1,))
    assert out.getvalue() == (
        "ref     n  message\n"
        "-----  --  -------\n"
        "net@2  12  second\n"
        "net@1   -  first\n"
    )
    empty = io.StringIO()
    UI(out=empty).table(["a"], [])
    assert empty.getvalue() == "a\n-\n(no rows)\n"


def test_wide_characters_stay_aligned() -> None:
    out = io.StringIO()
    UI(out=out).table(["model", "acc"], [("模型", 0.5), ("résumé", 0.25), ("net", 1)])
    lines = out.getvalue().splitlines()
    starts = {cell_len(line[: line.rindex(" ") + 1]) for line in (lines[0], *lines[2:])}
    assert len(starts) == 1, lines   # the second column starts at the same cell on every line


def test_query_tables_use_the_same_layout() -> None:
    text = format_table(("name", "acc"), (("模型", 0.5), ("net", 1.0)))
    out = io.StringIO()
    UI(out=out).table(["name", "acc"], [["模型", "0.5"], ["net", "1"]], align_right=(1,), footer="(2 rows)")
    assert out.getvalue() == text + "\n"


def test_a_terminal_gets_colour_and_piped_output_none(monkeypatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    tty = _Terminal()
    UI(out=tty).table(["ref", "message"], [("net@1", "[bold] is not markup")])
    shown = tty.getvalue()
    assert "\x1b[" in shown and "[bold] is not markup" in shown and "net@1" in shown
    piped = io.StringIO()
    UI(out=piped).table(["ref", "message"], [("net@1", "x")])
    assert "\x1b[" not in piped.getvalue()
    as_json = _Terminal()
    ui = UI(out=as_json)
    ui.json_mode = True
    assert not ui.terminal
