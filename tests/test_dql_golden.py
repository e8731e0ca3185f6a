"""Golden files: AST dumps, explain plans (over a generated catalog) and error texts."""
from __future__ import annotations

import os

import pytest

from dql_golden import GOLDEN_DIR, read_cases, write_cases
from modelhub.dql import ast as A
from modelhub.dql import execute, parse
from modelhub.errors import QueryError

UPDATE = os.environ.get("DQL_GOLDEN_UPDATE") == "1"


def _ast(query: str, catalog) -> str:
    return A.dump(parse(query))


def _plan(query: str, catalog) -> str:
    return execute(query, catalog).text


def _error(query: str, catalog) -> str:
    with pytest.raises(QueryError) as info:
        execute(query, catalog)
    return f"{type(info.value).__name__}: {info.value}"


KINDS = {"ast": _ast, "plan": _plan, "errors": _error}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_golden(kind: str, gen_catalog) -> None:
    path = GOLDEN_DIR / f"{kind}.golden"
    cases = read_cases(path)
    assert cases, f"{path} holds no cases"
    actual = [(name, query, KINDS[kind](query, gen_catalog)) for name, query, _ in cases]
    if UPDATE:
        write_cases(path, actual)
        return
    for (name, _, expected), (_, query, got) in zip(cases, actual):
        assert got == expected, f"{kind}/{name} differs for:\n{query}\n--- got\n{got}"
