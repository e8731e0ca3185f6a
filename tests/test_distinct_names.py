"""No two classes share a name anywhere in the product (issue 14): a name says which layer a type
belongs to (StoragePlan, ExtractionPlan, RefinementPlan; dql's Comparison vs the catalog's
ComparisonTerm), so a traceback, an import or a search never has to guess."""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _classes(source: Path) -> list[str]:
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    return [node.name for node in tree.body if isinstance(node, ast.ClassDef)]


def duplicate_class_names(folders: list[Path]) -> dict[str, list[str]]:
    where: dict[str, list[str]] = defaultdict(list)
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            for name in _classes(path):
                where[name].append(str(path.relative_to(ROOT)))
    return {name: paths for name, paths in where.items() if len(paths) > 1}


def test_no_two_classes_share_a_name() -> None:
    assert duplicate_class_names([ROOT / "modelhub", ROOT / "storage"]) == {}


def test_the_check_sees_a_repeated_name(tmp_path: Path, monkeypatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x.py").write_text("class Plan:\n    pass\n")
    (b / "y.py").write_text("class Plan:\n    pass\nclass Other:\n    pass\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert duplicate_class_names([a, b]) == {"Plan": ["a/x.py", "b/y.py"]}
