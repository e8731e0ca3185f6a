"""Commands that only read the catalog start without importing torch (issue 15).

Each command runs as a fresh process, as a shell runs it; at exit the process
asserts which heavy packages it imported. Importing torch costs about a second
before a command does anything, and people run `dlv log` in loops.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import modelhub

ROOT = Path(__file__).resolve().parents[1]

#: runs `dlv ARGS` in-process, then fails (exit 99) naming any forbidden module that was imported
PROBE = """
import sys
from modelhub.cli import main
forbidden = sys.argv[1].split(",")
code = main(sys.argv[2:])
sys.stdout.flush()
loaded = sorted(m for m in forbidden if m in sys.modules)
if loaded:
    sys.stderr.write("imported: " + ",".join(loaded) + "\\n")
    sys.exit(99)
sys.exit(code)
"""

HEAVY = ("torch", "ray", "transformers", "pandas", "prompt_toolkit")
#: the archive's codecs (storage/tensors.py and below) import these; commands that read only the
#: catalog must not (a tenth of torch's import time, a third of `dlv log`'s budget). `stats`
#: reads manifests and `search` decodes a remote's catalog view: they may.
CODECS = ("numpy", "zstandard")

#: (arguments, what may NOT be imported); only a query needs the DQL parser (lark)
READ_ONLY_COMMANDS = [
    (["--help"], HEAVY + ("numpy", "lark", "duckdb")),
    (["--version"], HEAVY + ("numpy", "lark", "duckdb")),
    (["log", "--help"], HEAVY + ("numpy", "lark", "duckdb")),
    (["log"], HEAVY + CODECS + ("lark",)),
    (["log", "m", "--json"], HEAVY + CODECS + ("lark",)),
    (["list"], HEAVY + CODECS + ("lark",)),
    (["desc", "m"], HEAVY + CODECS + ("lark",)),
    (["desc", "m@1", "--json"], HEAVY + CODECS + ("lark",)),
    (["diff", "m@2", "m@3"], HEAVY + CODECS + ("lark",)),   # metadata only: the same weights
    (["stats"], HEAVY + ("lark",)),
    (["remote", "list"], HEAVY + CODECS + ("lark",)),
    (["query", "select m where m.name like 'm%' and m.metrics['acc'] > 0.1"], HEAVY + CODECS),
    (["search", "hub", "select m where m.name == 'm'"], HEAVY),
    (["status"], HEAVY + CODECS + ("lark",)),
]


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory) -> Path:
    import torch

    root = tmp_path_factory.mktemp("startup") / "repo"
    repo = modelhub.init_repo(root)
    for step in range(2):
        state = {"fc.weight": torch.full((2, 2), float(step)), "fc.bias": torch.zeros(2)}
        repo.commit(state, name="m", message=f"step {step}", hparams={"lr": 0.1}, metrics={"acc": 0.5 + step / 10})
    repo.commit_parent_weights(name="m", message="same weights, new lr", hparams={"lr": 0.2})  # m@3
    hub = root.parent / "hub"
    env = _env()
    for argv in (["remote", "add", "hub", str(hub)], ["publish", "hub"]):
        proc = subprocess.run([sys.executable, "-m", "modelhub", *argv], cwd=root, env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    return root


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _run(argv: list[str], forbidden: tuple[str, ...], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, ",".join(forbidden), *argv], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=300)


def _has_command(name: str) -> bool:
    return (ROOT / "modelhub" / "cli" / f"cmd_{name}.py").is_file()


@pytest.mark.parametrize(("argv", "forbidden"), READ_ONLY_COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_read_only_commands_import_no_heavy_package(small_repo, argv, forbidden) -> None:
    if argv[0] not in ("--help", "--version") and not _has_command(argv[0]):
        pytest.skip(f"no `dlv {argv[0]}` in this build")
    proc = _run(argv, forbidden, small_repo)
    assert proc.returncode == 0, (argv, proc.stderr)
    assert proc.stdout.strip()


def test_the_probe_sees_an_import(small_repo) -> None:
    """The check itself works: a command that needs torch (committing a torch.save file) is caught."""
    import torch

    pt = small_repo.parent / "w.pt"
    torch.save({"w": torch.ones(3)}, pt)
    proc = _run(["commit", str(pt), "--name", "p", "-m", "from a .pt"], ("torch",), small_repo)
    assert proc.returncode == 99 and "imported: torch" in proc.stderr


@pytest.mark.parametrize("ref", ["m", "m@1"], ids=["from the hot copy", "decoded"])
def test_checkout_writes_weights_without_importing_torch(small_repo, ref) -> None:
    """A checkout copies bytes: from the latest version's hot copy, or decoded by the codecs."""
    assert (small_repo / ".dlv" / "hot").is_dir() and any((small_repo / ".dlv" / "hot").iterdir())
    out = small_repo.parent / f"{ref}.safetensors"
    proc = _run(["checkout", ref, "-o", str(out), "--force"], HEAVY + ("lark",), small_repo)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0


def test_import_modelhub_is_light() -> None:
    """`import modelhub` exports Repo, init_repo and open_repo lazily (PEP 562)."""
    code = ("import sys, modelhub; assert 'torch' not in sys.modules and 'duckdb' not in sys.modules; "
            "r = modelhub.Repo; assert 'torch' not in sys.modules; print(r.__name__)")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "Repo", proc.stderr


def test_registry_summaries_match_the_command_modules() -> None:
    """`dlv --help` lists each command from the registry; the text is the module's own HELP."""
    from modelhub.cli import build_parser
    from modelhub.cli.registry import SUMMARIES

    _, commands = build_parser()
    for name in commands:
        if name in SUMMARIES:
            assert SUMMARIES[name] == commands[name].HELP, name


def test_a_commit_streamed_from_a_safetensors_file_imports_no_torch(small_repo, tmp_path) -> None:
    """`dlv commit model.safetensors` reads the file itself (modelhub/weightfiles.py): importing torch
    was seconds of its start-up, as long as a commit of a 100 MB model takes."""
    import numpy as np
    from safetensors.numpy import save_file
    weights = tmp_path / "w.safetensors"
    save_file({"fc.weight": np.ones((3, 2), np.float32), "fc.bias": np.zeros(3, np.float32)}, str(weights))
    proc = _run(["commit", str(weights), "--name", "streamed", "-m", "from a file"], ("torch",), small_repo)
    assert proc.returncode == 0, proc.stderr


def test_a_cold_checkout_imports_no_torch(small_repo, tmp_path) -> None:
    """Without a hot copy, `dlv checkout` decodes into a safetensors file it writes itself."""
    env = dict(_env(), DLV_HOT_COPIES="0")
    proc = subprocess.run([sys.executable, "-c", PROBE, "torch", "checkout", "m@1", "-o", str(tmp_path / "w.safetensors")],
                          cwd=small_repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_adding_records_imports_no_torch(small_repo, tmp_path) -> None:
    """`dlv data add` runs once per labeling cycle, before every query: importing torch (through
    the engine's DataView) was two thirds of its 2.4 s."""
    import numpy as np
    records = tmp_path / "cycle.npz"
    np.savez(records, x=np.ones((4, 3), np.float32), y=np.arange(4))
    proc = _run(["data", "add", "cycle", str(records)], ("torch",), small_repo)
    assert proc.returncode == 0, proc.stderr
    assert "added 4 record(s)" in proc.stdout


def test_a_dlv_process_gets_one_blas_thread_unless_the_user_chose(monkeypatch) -> None:
    """numpy's OpenBLAS threads spin after its import and are joined at exit; dlv does no numpy
    matrix products, so the `dlv` entry point asks for one thread, and keeps a number a user set."""
    from modelhub import cli

    monkeypatch.setattr(cli, "main", lambda: 0)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    with pytest.raises(SystemExit, match="^0$"):
        cli.entry_point()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    with pytest.raises(SystemExit, match="^0$"):
        cli.entry_point()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"
