"""What the layering tests read from the source: modules, their imports, import cycles, SQL.

One walker for tests/test_engine_boundaries.py, test_storage_isolation.py and
test_catalog_boundary.py. Imports are read from the syntax tree, every ``import``
statement counted, including those inside functions and ``if TYPE_CHECKING:`` blocks:
an import that runs only later still takes part in a loop (a lazy import hides a loop,
it does not remove it).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

#: calls that run SQL on a DuckDB connection
SQL_CALLS = frozenset({"execute", "executemany", "sql"})
#: statements, not prose: upper-case keywords followed by the clause that makes them SQL
SQL_TEXT = re.compile(r"\b(SELECT\b.+\bFROM|INSERT (OR \w+ )?INTO|DELETE FROM|UPDATE \w+ SET"
                      r"|CREATE (TABLE|INDEX|VIEW)|ALTER TABLE|DROP TABLE|ATTACH |DETACH |CHECKPOINT\b)", re.S)


def package_modules(folder: Path, package: str) -> dict[str, Path]:
    """Dotted name -> source file of every module of the package ``package`` kept in ``folder``
    (its own files: not those of a symlinked folder inside it)."""
    out: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.py")):
        if not path.resolve().is_relative_to(folder.resolve()):
            continue
        parts = path.relative_to(folder).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        out[".".join((package, *parts))] = path
    return out


def imported_names(module: str, path: Path) -> set[str]:
    """Absolute names of everything module ``module`` (source ``path``) imports anywhere in its body;
    ``from a import b`` gives both a and a.b (b may be a module or a name inside a)."""
    here = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def import_edges(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of ``modules`` that importing it initializes: each target, and every
    package above a target that the importer is not already inside (that one is initializing)."""
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target in imported_names(name, path):
            if target not in modules or name == target or name.startswith(target + "."):
                continue
            edges[name].add(target)
            parts = target.split(".")
            for i in range(1, len(parts)):
                package = ".".join(parts[:i])
                if package in modules and not (name == package or name.startswith(package + ".")):
                    edges[name].add(package)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import loops of ``edges``: each strongly connected component of more than one module
    (or a module importing itself), sorted (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def sql_uses(path: Path) -> list[tuple[int, str]]:
    """Where ``path`` runs or spells SQL, as (line, what): ``.execute(...)``-style calls and SQL
    statements in string literals."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS:
            found.append((node.lineno, f".{node.func.attr}(...)"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_TEXT.search(node.value):
            found.append((node.lineno, repr(node.value.strip()[:60])))
    return sorted(found)
