"""The engine and progressive evaluation sit below the repository layer (issue 14):
they see a repository only through engine/access.py's RepositoryAccess, so no module of
theirs imports the layers above, runs SQL, or takes part in an import cycle.

Imports are read from the source (every ``import`` statement, including those inside
functions and ``if TYPE_CHECKING:`` blocks), so an import that runs only later counts too.
"""
from __future__ import annotations

from pathlib import Path

import modelhub
from import_graph import cycles, import_edges, imported_names, package_modules, sql_uses as sql_in

PACKAGE_ROOT = Path(modelhub.__file__).parent
PACKAGES = ("modelhub.engine", "modelhub.progressive")
ABOVE = ("modelhub.repo", "modelhub.cli", "modelhub.repl", "modelhub.dql", "modelhub.ui")


def modules(root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    """Dotted name -> source file of every module of the engine and progressive packages."""
    return {name: path for package in PACKAGES
            for name, path in package_modules(root / package.split(".")[1], package).items()}


def layer_violations(root: Path = PACKAGE_ROOT) -> list[str]:
    out = []
    for name, path in modules(root).items():
        for target in sorted(imported_names(name, path)):
            if any(target == above or target.startswith(above + ".") for above in ABOVE):
                out.append(f"{name} imports {target}")
    return out


def sql_uses(root: Path = PACKAGE_ROOT) -> list[str]:
    return [f"{name}:{line} {'calls' if what.startswith('.') else 'holds SQL text'} {what}"
            for name, path in modules(root).items() for line, what in sql_in(path)]


def test_engine_and_progressive_import_nothing_above_them():
    assert len(modules()) > 30, "the module walk found too few modules to mean anything"
    assert layer_violations() == []


def test_engine_and_progressive_run_no_sql():
    assert sql_uses() == []


def test_no_import_cycles_inside_engine_and_progressive():
    edges = import_edges(modules())
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
    assert cycles(import_edges(modules(pkg))) == [["modelhub.engine.a", "modelhub.engine.b"]]
