"""The catalog is the one door to the database (issue 14).

* SQL lives in ``modelhub/catalog/`` only: no other module calls ``.execute``
  or holds an SQL statement in a string literal.
* Inside ``modelhub/repo/`` tensors go through ``repo/tensorstore.py``: it is
  the only repo module that imports the catalog's tensor queries.
* ``modelhub/repo`` and ``modelhub/catalog`` import each other without loops
  (function-level imports included: a lazy import hides a loop, it does not
  remove it).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "modelhub"

#: statements, not prose: upper-case keywords followed by what makes them SQL
_SQL = re.compile(r"\b(SELECT\b.+\bFROM|INSERT (OR \w+ )?INTO|DELETE FROM|UPDATE \w+ SET|CREATE (TABLE|INDEX|VIEW)"
                  r"|ALTER TABLE|DROP TABLE|ATTACH |DETACH |CHECKPOINT\b)", re.S)
_EXECUTE = {"execute", "executemany", "sql"}


def _modules(folder: Path) -> list[Path]:
    """The package's own source files (not symlinked folders such as a local modelhub/storage)."""
    return sorted(p for p in folder.rglob("*.py") if p.resolve().is_relative_to(folder.resolve()))


def _sql_uses(path: Path, root: Path = ROOT) -> list[str]:
    """Where ``path`` runs or spells SQL: ``.execute(...)`` calls and SQL statements in string literals."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _EXECUTE:
            found.append(f"{path.relative_to(root)}:{node.lineno}: .{node.func.attr}(...)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _SQL.search(node.value):
            found.append(f"{path.relative_to(root)}:{node.lineno}: {node.value.strip()[:60]!r}")
    return found


def _sql_outside_catalog(folder: Path) -> list[str]:
    out = []
    for path in _modules(folder):
        if (PACKAGE / "catalog") in path.parents:
            continue
        out.extend(_sql_uses(path))
    return out


def test_the_sql_detector_sees_statements_and_calls(tmp_path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('con.execute("SELECT id FROM versions WHERE model = ?", [m])\n'
                      'Q = "DELETE FROM staged"\n'
                      'PROSE = "select the version, then insert it into the table"\n')
    uses = {u.split(": ", 1)[1] for u in _sql_uses(sample, tmp_path)}
    assert uses == {".execute(...)", "'SELECT id FROM versions WHERE model = ?'", "'DELETE FROM staged'"}


def test_repo_writes_no_sql() -> None:
    assert _sql_outside_catalog(PACKAGE / "repo") == []


def test_only_the_catalog_writes_sql() -> None:
    assert _sql_outside_catalog(PACKAGE) == []


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Absolute names of the modules ``path`` (module ``module``) imports, anywhere in its body."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            # `from . import tensorstore` imports a module; `from .reads import version_info` the module it names
            submodules = {f"{base}.{a.name}" for a in node.names} & known
            out.update(submodules or {base})
    return out


def _import_graph(packages: list[str]) -> dict[str, set[str]]:
    modules: dict[str, Path] = {}
    for pkg in packages:
        folder = ROOT / Path(*pkg.split("."))
        for path in _modules(folder):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            modules[name] = path
    return {name: {m for m in _imports(path, name, set(modules)) if m in modules and m != name}
            for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop of ``graph`` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_loop() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_repo_and_catalog_import_without_loops() -> None:
    graph = _import_graph(["modelhub.repo", "modelhub.catalog"])
    assert "modelhub.repo.tensorstore" in graph and "modelhub.catalog.tensors" in graph
    assert _cycle(graph) is None


def test_catalog_never_imports_repo() -> None:
    graph = _import_graph(["modelhub.repo", "modelhub.catalog"])
    upward = {(m, d) for m, deps in graph.items() if m.startswith("modelhub.catalog") for d in deps
              if d.startswith("modelhub.repo")}
    assert upward == set()


def test_only_tensorstore_reads_the_tensor_tables_in_repo() -> None:
    graph = _import_graph(["modelhub.repo", "modelhub.catalog"])
    users = sorted(m for m, deps in graph.items() if m.startswith("modelhub.repo") and "modelhub.catalog.tensors" in deps)
    assert users == ["modelhub.repo.tensorstore"]
