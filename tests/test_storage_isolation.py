"""storage/ stands on its own: it imports without modelhub, starts nothing at import, has no import
cycles and speaks neutrally (no command names: modelhub's boundary adds the how-to-fix)."""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import modelhub.storage
from import_graph import cycles, import_edges, imported_names, package_modules

STORAGE = Path(modelhub.storage.__file__).parent
MODULES = sorted(p.stem for p in STORAGE.glob("*.py") if p.stem != "__init__")

# Runs in a fresh interpreter: storage/ is loaded as a top-level package named "storage" while every
# modelhub import is refused, then every module is imported and a tensor makes a round trip.
_ISOLATED = textwrap.dedent("""
    import importlib, importlib.abc, importlib.util, sys, threading

    class RefuseModelhub(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "modelhub" or name.startswith("modelhub."):
                raise ImportError("storage imported " + name)
            return None

    sys.meta_path.insert(0, RefuseModelhub())
    import numpy, zstandard                     # the two dependencies (numpy's own import is not ours)
    threads_before = sorted(t.name for t in threading.enumerate())
    root, modules = sys.argv[1], sys.argv[2].split(",")
    spec = importlib.util.spec_from_file_location("storage", root + "/__init__.py",
                                                  submodule_search_locations=[root])
    package = importlib.util.module_from_spec(spec)
    sys.modules["storage"] = package
    spec.loader.exec_module(package)
    for name in modules:
        importlib.import_module("storage." + name)
    threads_after = sorted(t.name for t in threading.enumerate())

    from storage.tensors import decode_tensor, encode_tensor
    raw = numpy.arange(300_000, dtype="<f4").tobytes()
    enc = encode_tensor(raw, "float32", [300_000])
    blobs = dict(zip(enc.manifest["segments"], enc.blobs))
    assert decode_tensor(enc.manifest, blobs.__getitem__, len(raw)) == raw
    print("threads", threads_before == threads_after, threads_before, threads_after)
    print("pool", sorted({t.name.rsplit("_", 1)[0] for t in threading.enumerate()}))
    import os
    pid = os.fork()
    if pid == 0:   # the child inherits the pool object, not its threads: its decode must still finish
        os._exit(0 if decode_tensor(enc.manifest, blobs.__getitem__, len(raw)) == raw else 1)
    print("child exit", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    print("modelhub", sorted(m for m in sys.modules if m == "modelhub" or m.startswith("modelhub.")))
""")


def _run_isolated() -> list[str]:
    proc = subprocess.run([sys.executable, "-c", _ISOLATED, str(STORAGE), ",".join(MODULES)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_storage_imports_and_works_with_modelhub_unimportable() -> None:
    lines = _run_isolated()
    assert "modelhub []" in lines


def test_importing_storage_starts_no_threads() -> None:
    threads = next(line for line in _run_isolated() if line.startswith("threads"))
    assert threads.startswith("threads True"), threads


def test_decode_threads_start_on_the_first_large_decode_and_a_forked_child_starts_its_own() -> None:
    lines = _run_isolated()
    assert "pool ['MainThread', 'storage-zstd']" in lines and "child exit 0" in lines


def _storage_graph() -> tuple[dict[str, set[str]], list[str]]:
    """(import edges between storage's modules, the imports that reach modelhub outside storage)."""
    modules = package_modules(STORAGE, "modelhub.storage")
    outside = sorted(f"{name} imports {target}" for name, path in modules.items()
                     for target in imported_names(name, path)
                     if target.split(".")[0] == "modelhub" and not target.startswith("modelhub.storage"))
    return import_edges(modules), outside


def test_no_storage_module_takes_part_in_an_import_cycle() -> None:
    edges, outside = _storage_graph()
    assert outside == []
    assert "modelhub.storage.segmented" in edges["modelhub.storage.tensors"], "the walk lost an import"
    assert cycles(edges) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"codecs": {"segmented"}, "segmented": {"tensors"}, "tensors": {"codecs"}, "plan": set()}) == [
        ["codecs", "segmented", "tensors"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def _raised_texts(path: Path) -> list[str]:
    """Every string literal inside a ``raise`` statement or an exception's ``super().__init__`` call."""
    texts = []
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) or (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                                           and node.func.attr == "__init__"):
            texts += [c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
    return texts


def test_storage_messages_are_neutral() -> None:
    words = ("dlv", "repository", "catalog", "commit")
    offending = [(name, text) for name in ["__init__"] + MODULES for text in _raised_texts(STORAGE / f"{name}.py")
                 if any(w in text.lower() for w in words)]
    assert offending == []
    assert "object" in " ".join(_raised_texts(STORAGE / "errors.py"))   # the scan does see messages
