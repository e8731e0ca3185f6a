"""Import structure of the query language, read from the source (AST), not by importing it:
no import cycles among dql's modules, lark only in dql, no SQL-writing dependency on dql
from the catalog, and no engine call from dql (evaluate goes through a callback)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DQL = ROOT / "modelhub" / "dql"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, submodules: frozenset[str] = frozenset()) -> set[str]:
    """Absolute names of the modules ``path`` imports (at any depth of the file, so imports
    inside functions count). ``from P import x`` imports the module ``P.x`` when that is one of
    ``submodules``, else (x being a name defined in P) the module ``P``; without ``submodules``
    both count."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            for alias in node.names:
                sub = f"{base_name}.{alias.name}"
                if submodules:
                    found.add(sub if sub in submodules else base_name)
                else:
                    found.update((base_name, sub))
    return found


def _dql_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in DQL.glob("*.py")}
    names = frozenset(modules)
    return {name: {m for m in _imports(path, names) if m in modules and m != name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as the list of modules on it, or None."""
    state: dict[str, int] = {}      # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_relative_imports_resolve_to_dql_modules() -> None:
    graph = _dql_graph()
    assert "modelhub.dql.plan" in graph["modelhub.dql.executor"]      # `from . import plan as P`
    assert "modelhub.dql.parser" in graph["modelhub.dql.binder"]      # `from .parser import ...`


def test_dql_modules_import_each_other_without_cycles() -> None:
    cycle = _cycle(_dql_graph())
    assert cycle is None, "import cycle in modelhub/dql: " + " -> ".join(cycle or ())


def test_only_dql_imports_lark() -> None:
    for path in list((ROOT / "modelhub").rglob("*.py")) + list((ROOT / "storage").rglob("*.py")):
        if DQL in path.parents:
            continue
        lark = {m for m in _imports(path) if m.split(".")[0] == "lark"}
        assert not lark, f"{path.relative_to(ROOT)} imports {sorted(lark)}: only modelhub/dql may use lark"


def test_the_catalog_does_not_import_dql() -> None:
    for path in (ROOT / "modelhub" / "catalog").rglob("*.py"):
        dql = {m for m in _imports(path) if m.startswith("modelhub.dql")}
        assert not dql, f"{path.relative_to(ROOT)} imports {sorted(dql)}: the catalog sits below dql"


def test_dql_reaches_the_engine_only_through_its_spec_contract() -> None:
    spec = "modelhub.engine.spec"
    for path in DQL.glob("*.py"):
        engine = {m for m in _imports(path) if m == "modelhub.engine" or m.startswith("modelhub.engine.")}
        beyond = {m for m in engine if m != spec and not m.startswith(spec + ".")}
        assert not beyond, (f"{path.relative_to(ROOT)} imports {sorted(beyond)}: dql sees the engine only "
                            "through engine/spec.py; evaluate runs through the caller's EvaluateRunner")
