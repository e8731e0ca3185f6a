"""Completion of keywords, model names, layer names, hparam and metric keys from the catalog."""
from __future__ import annotations

import re
from typing import Iterable

from prompt_toolkit.completion import Completer, Completion

from ..dql.lexicon import FUNCTIONS, KEYWORD_WORDS, PROPERTIES, TEMPLATES
from ..dql.vocabulary import Vocabulary


class DQLCompleter(Completer):
    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab

    def candidates(self, before: str) -> tuple[str, list[str]]:
        """(the partial word being completed, the sorted choices) for the text before the cursor."""
        v = self.vocab
        for rx, pool in (
            (r"\.hparams\.(\w*)$", v.hparam_keys),
            (r"\.hparams\[[\"']([^\"']*)$", v.hparam_keys),
            (r"\.metrics\[[\"']([^\"']*)$", v.metric_names),
            (r"\[[\"']([^\"']*)$", v.layer_names),
            (r"\.(\w*)$", PROPERTIES),
            (r"(?:like|==|!=|in \[)\s*[\"']([^\"']*)$", v.models),
            (r"from\s+[\"']([^\"']*)$", v.saved),
        ):
            m = re.search(rx, before, re.IGNORECASE)
            if m:
                word = m.group(1)
                return word, sorted(c for c in pool if c.startswith(word))
        m = re.search(r"(\w*)$", before)
        word = m.group(1) if m else ""
        if not word:
            return "", []
        pool: Iterable[str] = list(KEYWORD_WORDS) + list(TEMPLATES) + list(FUNCTIONS)
        low = word.lower()
        return word, sorted({c for c in pool if c.lower().startswith(low) and c.lower() != low})

    def get_completions(self, document, complete_event):
        word, choices = self.candidates(document.text_before_cursor)
        for c in choices[:200]:
            yield Completion(c, start_position=-len(word))
