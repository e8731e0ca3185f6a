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

from pathlib import Path

from import_graph import cycles, import_edges, package_modules, sql_uses

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "modelhub"


def _sql_uses(path: Path, root: Path = ROOT) -> list[str]:
    return [f"{path.relative_to(root)}:{line}: {what}" for line, what in sql_uses(path)]


def _sql_outside_catalog(folder: Path) -> list[str]:
    out = []
    for path in package_modules(folder, folder.name).values():
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


def _import_graph(packages: list[str]) -> dict[str, set[str]]:
    modules = {name: path for pkg in packages
               for name, path in package_modules(ROOT / Path(*pkg.split(".")), pkg).items()}
    return import_edges(modules)


def test_repo_and_catalog_import_without_loops() -> None:
    graph = _import_graph(["modelhub.repo", "modelhub.catalog"])
    assert "modelhub.repo.tensorstore" in graph and "modelhub.catalog.tensors" in graph
    assert cycles(graph) == []


def test_catalog_never_imports_repo() -> None:
    graph = _import_graph(["modelhub.repo", "modelhub.catalog"])
    upward = {(m, d) for m, deps in graph.items() if m.startswith("modelhub.catalog") for d in deps
              if d.startswith("modelhub.repo")}
    assert upward == set()


def test_only_tensorstore_reads_the_tensor_tables_in_repo() -> None:
    graph = _import_graph(["modelhub.repo", "modelhub.catalog"])
    users = sorted(m for m, deps in graph.items() if m.startswith("modelhub.repo") and "modelhub.catalog.tensors" in deps)
    assert users == ["modelhub.repo.tensorstore"]
