"""Every ```dql block of docs/DQL.md runs against a generated catalog, and together the blocks
use every construct of the language (each AST node type)."""
from __future__ import annotations

import re
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

from dqlref.synthetic import generate
from modelhub.dql import ast as A
from modelhub.dql import execute, parse
from modelhub.errors import QueryError

DOC = Path(__file__).resolve().parents[1] / "docs" / "DQL.md"


def statements() -> list[str]:
    blocks = re.findall(r"^```dql\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
    out = []
    for block in blocks:
        out += [s.strip() for s in re.split(r";\s*$", block, flags=re.M) if s.strip()]
    return out


STATEMENTS = statements()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    # the same catalog as the shared gen_catalog, but its own: the examples save queries
    return generate(tmp_path_factory.mktemp("docs"), 400, seed=7)


def test_the_document_has_examples() -> None:
    assert len(STATEMENTS) >= 30


def test_every_example_runs_in_order(catalog) -> None:
    for text in STATEMENTS:             # in document order: saved queries come before their use
        fails = re.search(r"-- fails: (.*)", text)
        run = f"explain {text}" if re.match(r"(?:--[^\n]*\n\s*)*evaluate\b", text) else text
        if fails:
            with pytest.raises(QueryError, match=re.escape(fails.group(1).strip())):
                execute(run, catalog)
        else:
            result = execute(run, catalog)
            assert result.kind in ("select", "slice", "construct", "explain", "save"), text


def _node_types(node, seen: set[str]) -> None:
    if isinstance(node, tuple):
        for n in node:
            _node_types(n, seen)
    elif is_dataclass(node):
        seen.add(type(node).__name__)
        for f in fields(node):
            _node_types(getattr(node, f.name), seen)


def test_the_examples_cover_every_construct() -> None:
    seen: set[str] = set()
    for text in STATEMENTS:
        stmt = parse(text)
        _node_types(stmt, seen)
        if isinstance(stmt, A.SelectQuery) and stmt.group:
            seen.add("group by")
        if isinstance(stmt, A.EvaluateQuery) and stmt.keep is not None and stmt.keep.per:
            seen.add("keep per dataset")
        if isinstance(stmt, (A.Like, A.InList, A.Between, A.Matches, A.Lineage)):  # pragma: no cover
            pass
    conditions = {"Comparison", "Like", "Matches", "InList", "Between", "Has", "Lineage", "And", "Or", "Not"}
    values = {"Path", "Call", "Literal", "Arith", "Attr", "Subscript", "Template"}
    statements_ = {"SelectQuery", "SliceQuery", "ConstructQuery", "EvaluateQuery", "Explain", "SaveQuery",
                   "SourceAll", "SourceSubquery", "SourceSaved", "SelectItem", "OrderItem", "Assignment",
                   "InsertMutation", "DeleteEdge", "DeleteNode", "VaryItem", "KeepClause", "WithClause"}
    missing = (conditions | values | statements_ | {"group by", "keep per dataset"}) - seen
    assert not missing, f"docs/DQL.md has no example of {sorted(missing)}"
    negated = [t for t in STATEMENTS if re.search(r"\bnot (like|in|between|matches|descendant)\b", t)]
    assert len({m for t in negated for m in re.findall(r"\bnot (like|in|between|matches|descendant)\b", t)}) == 5
