"""DQL syntax highlighting for prompt_toolkit, from modelhub.dql.lexicon's token classes."""
from __future__ import annotations

from prompt_toolkit.document import Document
from prompt_toolkit.lexers import Lexer
from prompt_toolkit.styles import Style

from ..dql.lexicon import tokenize

STYLE = Style.from_dict({
    "keyword": "bold ansiblue", "template": "ansimagenta", "function": "ansicyan", "property": "ansigreen",
    "string": "ansiyellow", "number": "ansicyan", "comment": "italic ansibrightblack", "operator": "",
    "name": "", "space": "", "other": "ansired",
})


class DQLLexer(Lexer):
    def lex_document(self, document: Document):
        lines = document.lines

        def get_line(i: int):
            if i >= len(lines):
                return []
            return [(f"class:{kind}", text) for kind, text in tokenize(lines[i])]

        return get_line
