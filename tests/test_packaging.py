"""`pip install .` ships storage/ and grammar/ as modelhub.storage / modelhub.grammar."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package (pyproject: tomli; python_version < "3.11")
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _declared_packages() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])


def test_every_package_folder_is_declared() -> None:
    found = set()
    for init in ROOT.glob("modelhub/**/__init__.py"):
        found.add(".".join(init.parent.relative_to(ROOT).parts))
    for top, name in (("storage", "modelhub.storage"), ("grammar", "modelhub.grammar")):
        for init in (ROOT / top).glob("**/__init__.py"):
            found.add(".".join((name, *init.parent.relative_to(ROOT / top).parts)))
    assert found == _declared_packages()


def test_wheel_maps_top_level_folders_into_the_package(tmp_path) -> None:
    # Built from a copy: setuptools writes build/ and *.egg-info next to pyproject.toml,
    # and a test must leave nothing in the source tree.
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("modelhub", "storage", "grammar"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    had_build = (ROOT / "build").exists()
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert had_build or not (ROOT / "build").exists()
    (wheel,) = tmp_path.glob("modelhub-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "modelhub/storage/objects.py" in names
    assert "modelhub/grammar/__init__.py" in names
    assert {"modelhub/ui/static/uPlot.iife.min.js", "modelhub/ui/static/uPlot.LICENSE",
            "modelhub/ui/templates/index.html"} <= names   # the web UI's assets ship in the package
    assert not any(n.startswith(("storage/", "grammar/", "tests/")) for n in names)
    if shutil.which("cc"):   # the codec's kernels (storage/_kernels.c) are built beside storage's modules
        assert any(n.startswith("modelhub/storage/_kernels") and n.endswith((".so", ".pyd")) for n in names)
    assert any(n.endswith("entry_points.txt") for n in names)


def test_storage_never_imports_modelhub() -> None:
    for path in (ROOT / "storage").rglob("*.py"):
        text = path.read_text()
        assert "import modelhub" not in text and "from modelhub" not in text, path


def test_only_the_dql_package_imports_lark() -> None:
    for path in list((ROOT / "modelhub").rglob("*.py")) + list((ROOT / "storage").rglob("*.py")):
        if "dql" in path.relative_to(ROOT).parts:
            continue
        text = path.read_text()
        assert "import lark" not in text and "from lark" not in text, path


def test_sources_parse_as_python_3_10() -> None:
    """requires-python says 3.10: no 3.11-only syntax, and tomllib only with its tomli fallback."""
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"] == ">=3.10"
    for top in ("modelhub", "storage", "grammar", "tests"):
        for path in (ROOT / top).rglob("*.py"):
            text = path.read_text()
            ast.parse(text, str(path), feature_version=(3, 10))
            if "import tomllib" in text:
                assert "import tomli as tomllib" in text, f"{path}: tomllib is 3.11+; fall back to tomli"
