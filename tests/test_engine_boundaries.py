"""The engine and progressive evaluation sit below the repository layer (issue 14):
they see a repository only through engine/access.py's RepositoryAccess, so no module of
theirs imports the layers above, runs SQL, or takes part in an import cycle.

Imports are read from the source (every ``import`` statement, including those inside
functions and ``if TYPE_CHECKING:`` blocks), so an import that runs only later counts too.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import modelhub

PACKAGE_ROOT = Path(modelhub.__file__).parent
PACKAGES = ("modelhub.engine", "modelhub.progressive")
ABOVE = ("modelhub.repo", "modelhub.cli", "modelhub.repl", "modelhub.dql", "modelhub.ui")
SQL_CALLS = {"execute", "executemany", "sql"}
# a statement, not prose: a keyword that starts one, followed by the clause it needs
SQL_TEXT = re.compile(r"\b(SELECT\b.*\bFROM|INSERT\b.*\bINTO|DELETE\s+FROM|UPDATE\b.*\bSET|CREATE\s+TABLE)\b", re.S)


def modules(root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    """Dotted name -> source file of every module of the engine and progressive packages."""
    out: dict[str, Path] = {}
    for package in PACKAGES:
        folder = root / package.split(".")[1]
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(root.parent).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imported(name: str, path: Path) -> set[str]:
    """Absolute names of everything the module imports (``from a import b``: a, and a.b)."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
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


def import_edges(root: Path = PACKAGE_ROOT) -> dict[str, set[str]]:
    """Module -> the engine/progressive modules importing it initializes: the target itself and
    every package above it that the importer is not already inside."""
    known = modules(root)
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target in imported(name, path):
            if target not in known or name.startswith(target + "."):
                continue     # not ours, or a package the importer is inside (already initializing)
            edges[name].add(target)
            parts = target.split(".")
            for i in range(2, len(parts)):
                package = ".".join(parts[:i])
                if package in known and not (name == package or name.startswith(package + ".")):
                    edges[name].add(package)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
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
            if len(component) > 1 or v in edges[v]:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer_violations(root: Path = PACKAGE_ROOT) -> list[str]:
    out = []
    for name, path in modules(root).items():
        for target in sorted(imported(name, path)):
            if any(target == above or target.startswith(above + ".") for above in ABOVE):
                out.append(f"{name} imports {target}")
    return out


def sql_uses(root: Path = PACKAGE_ROOT) -> list[str]:
    out = []
    for name, path in modules(root).items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS:
                out.append(f"{name}:{node.lineno} calls .{node.func.attr}(...)")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_TEXT.search(node.value):
                out.append(f"{name}:{node.lineno} holds SQL text {node.value[:40]!r}")
    return out


def test_engine_and_progressive_import_nothing_above_them():
    assert len(modules()) > 30, "the module walk found too few modules to mean anything"
    assert layer_violations() == []


def test_engine_and_progressive_run_no_sql():
    assert sql_uses() == []


def test_no_import_cycles_inside_engine_and_progressive():
    edges = import_edges()
    assert "modelhub.engine.executor" in edges["modelhub.engine.ray_backend"], "the edge walk lost an import"
    assert cycles(edges) == []


def test_the_checks_find_what_they_look_for(tmp_path):
    """The walks above on a made-up package: a repository import, a SQL call, SQL text and a
    loop through a lazy import are all reported."""
    pkg = tmp_path / "modelhub"
    (pkg / "engine").mkdir(parents=True)
    (pkg / "progressive").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "engine" / "__init__.py").write_text("from .a import f\n")
    (pkg / "engine" / "a.py").write_text(
        "from ..repo.reads import version_info\n"
        "def f(con):\n    from . import b\n    return con.execute('SELECT 1')\n")
    (pkg / "engine" / "b.py").write_text("from .a import f\nQ = 'DELETE FROM materializations'\n")
    (pkg / "progressive" / "__init__.py").write_text("from modelhub.engine import a\n")
    assert layer_violations(pkg) == ["modelhub.engine.a imports modelhub.repo.reads",
                                     "modelhub.engine.a imports modelhub.repo.reads.version_info"]
    assert sql_uses(pkg) == ["modelhub.engine.a:4 calls .execute(...)",
                             "modelhub.engine.b:2 holds SQL text 'DELETE FROM materializations'"]
    assert cycles(import_edges(pkg)) == [["modelhub.engine.a", "modelhub.engine.b"]]
