"""The REPL driven through prompt_toolkit's pipe input."""
from __future__ import annotations

import io

import pytest
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from helpers import tiny_cnn
from modelhub.repl import ReplSession
from modelhub.repl.completion import DQLCompleter
from modelhub.repl.highlight import DQLLexer


@pytest.fixture
def filled(repo):
    repo.commit(tiny_cnn(0), name="tiny", message="base", hparams={"lr": 0.1}, metrics={"acc": [0.2, 0.6]})
    return repo


def _run(repo, keys: str) -> tuple[int, str]:
    out = io.StringIO()
    with create_pipe_input() as inp:
        inp.send_text(keys)
        code = ReplSession(repo, out=out, input=inp, output=DummyOutput()).run()
    return code, out.getvalue()


def test_multiline_statement_ends_at_semicolon(filled) -> None:
    code, out = _run(filled, 'select m.name,\r  m.metrics["acc"]\r;\r\x04')
    assert code == 0
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("name"))
    assert lines[header].split() == ["name", "metrics[acc]"]
    assert lines[header + 2].split() == ["tiny", "0.6"] and lines[header + 3] == "(1 row)"


def test_select_m_shows_the_filtered_metric(filled) -> None:
    code, out = _run(filled, 'select m where m.metrics["acc"] > 0.5;\r\x04')
    header = next(line for line in out.splitlines() if line.startswith("id"))
    assert code == 0 and header.split() == ["id", "name", "seq", "creation_time", "metrics[acc]"]


def test_errors_do_not_end_the_session(filled) -> None:
    code, out = _run(filled, 'select m where m.nme == 1;\rselect m where m.name = "x";\rselect m.seq;\r\x04')
    assert code == 0
    assert 'error: unknown property m.nme: did you mean "name"?' in out
    assert "to compare use `==`" in out
    assert out.rstrip().endswith("(1 row)")


def test_ctrl_c_cancels_the_pending_statement(filled) -> None:
    code, out = _run(filled, 'select m where\r\x03select m.name;\r\x04')
    assert code == 0 and "error" not in out and "tiny" in out


def test_help_and_backslash_commands(filled) -> None:
    code, out = _run(filled, '\\help\r\\keys\r\\bogus\r\\quit\r')
    assert code == 0
    assert "end each statement with ;" in out and "metrics: acc" in out and "unknown command \\bogus" in out


def test_history_is_persistent(filled) -> None:
    _run(filled, 'select m.seq;\r\x04')
    hist = filled.paths.history.read_text()
    assert "select m.seq;" in hist


def test_completion_from_catalog(filled) -> None:
    from modelhub.dql.vocabulary import Vocabulary
    with filled.catalog.read() as con:
        comp = DQLCompleter(Vocabulary.load(con))
    assert comp.candidates("select m where m.hparams.l") == ("l", ["lr"])
    assert comp.candidates('select m where m.metrics["a') == ("a", ["acc"])
    assert comp.candidates('select m where m["co') == ("co", ["conv1", "conv2"])
    assert comp.candidates('select m where m.name like "ti') == ("ti", ["tiny"])
    assert comp.candidates("sel") == ("sel", ["select"])
    assert "creation_time" in comp.candidates("select m where m.cr")[1]


def test_highlighting_classes() -> None:
    from prompt_toolkit.document import Document
    line = DQLLexer().lex_document(Document('select m where m["c"] has POOL("MAX")'))(0)
    styles = {text: style for style, text in line}
    assert styles["select"] == "class:keyword" and styles["POOL"] == "class:template"
    assert styles['"MAX"'] == "class:string"
