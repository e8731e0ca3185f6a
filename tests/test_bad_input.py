"""Bad-input campaigns: mangled weights files, random command lines, damaged catalog rows.

Each input ends in a one-line ModelhubError that says how to fix it (never
another exception, never a traceback) and leaves the repository unchanged.
"""
from __future__ import annotations

import io
import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save

import modelhub
from helpers import tiny_cnn
from modelhub.cli import main
from modelhub.errors import ModelhubError, WeightsError
from modelhub.tensorio import load_weights_file

_STATE = {"a.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.ones(5, dtype=torch.int64)}
SAFETENSORS = st_save(_STATE)
_buf = io.BytesIO()
torch.save(_STATE, _buf)
TORCH_PT = _buf.getvalue()
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _mangle(data: bytes, cut: int, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data[: cut % (len(data) + 1)])
    for pos, val in flips:
        if out:
            out[pos % len(out)] ^= (val % 255) + 1
    return bytes(out)


@SETTINGS
@given(cut=st.integers(0, 10**6), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
       suffix=st.sampled_from([".safetensors", ".pt"]))
def test_mangled_weights_files_are_refused_cleanly(tmp_path_factory, cut, flips, suffix) -> None:
    path = tmp_path_factory.mktemp("w") / f"w{suffix}"
    path.write_bytes(_mangle(SAFETENSORS if suffix == ".safetensors" else TORCH_PT, cut, flips))
    try:
        state, _ = load_weights_file(path)
    except WeightsError as exc:
        assert "\n" not in str(exc) and ("re-export" in str(exc) or "re-save" in str(exc) or "state dict" in str(exc))
        return
    assert all(isinstance(t, torch.Tensor) for t in state.values())  # a flip may leave a valid file


@pytest.fixture(scope="module")
def fuzz_repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    repo = modelhub.init_repo(root)
    repo.commit(tiny_cnn(), name="net", message="base", hparams={"lr": 0.1})
    return repo


@pytest.fixture(scope="module")
def fuzz_state(fuzz_repo):
    """The repository's stats after the last command of the campaign: what a failing command
    must leave as it found it (kept here so that each example reads the stats once, not twice)."""
    return {"stats": fuzz_repo.stats()}


WORDS = ["init", "add", "commit", "log", "list", "desc", "diff", "checkout", "copy", "stats", "gc", "fsck", "query",
         "-m", "--name", "--weights", "--model", "--parent", "--hparam", "--metric", "-o", "--json", "--all",
         "--snapshot", "net", "net@1", "net@0", "net@x", "@", "", " ", "lr=0.1", "x=", "=1", "a.py:B", "-1",
         "missing.safetensors", "select m where", "\x00", "ü", "--repo", "--force", "--dry-run"]


@SETTINGS
@given(argv=st.lists(st.sampled_from(WORDS), min_size=0, max_size=6))
def test_random_command_lines_never_crash(fuzz_repo, fuzz_state, monkeypatch, argv) -> None:
    monkeypatch.chdir(fuzz_repo.root)
    if argv[:1] in (["init"], ["gc"], ["checkout"], ["copy"]) or "--repo" in argv or "-o" in argv:
        argv = ["log", *argv[1:]]  # keep the campaign from writing outside or re-initializing
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, out=out, err=err)
    assert isinstance(code, int)
    if code != 0:
        lines = err.getvalue().strip().splitlines()
        assert lines and "Traceback" not in err.getvalue()
        if "--json" in argv:  # under --json an error is one JSON object on stderr (issue 15)
            assert len(lines) == 1 and json.loads(lines[0])["error"]["code"] == code, lines
        else:
            assert lines[0].startswith("error: ")
        if not argv or argv[0] != "query":  # parse errors add the source line and a caret
            assert len(lines) == 1, lines
        assert fuzz_repo.stats() == fuzz_state["stats"]
    else:
        fuzz_state["stats"] = fuzz_repo.stats()     # a command that succeeded may have changed it


@pytest.mark.parametrize(
    "sql, error",
    [
        ("UPDATE tensor_data SET encoding = 'not json'", "has a malformed catalog entry"),
        ("UPDATE tensor_data SET encoding = '{\"codec\": \"nope\"}'", "unknown tensor codec|malformed catalog entry"),
        ("UPDATE tensor_data SET shape = '[999]'", "malformed catalog entry|does not match|corrupt"),
        ("DELETE FROM tensor_data", "is referenced but not in the catalog"),
    ],
)
def test_damaged_catalog_rows_are_named(repo, sql, error, monkeypatch) -> None:
    # the archive path: a hot copy (test_hotcopy.py) would still serve the intact latest weights
    monkeypatch.setenv("DLV_HOT_COPIES", "0")
    repo.commit(tiny_cnn(), name="m", message="a")
    with repo.catalog.write() as con:
        con.execute(sql)
    with pytest.raises(ModelhubError, match=error):
        repo.checkout("m")
    assert not repo.fsck(deep=True).ok


def test_damaged_graph_definition_is_a_graph_error(repo) -> None:
    repo.commit(tiny_cnn(), name="m", message="a")
    with repo.catalog.write() as con:
        con.execute("UPDATE graphs SET definition = '{\"nodes\": 5}'")
    with pytest.raises(ModelhubError, match="network definition of .* is malformed"):
        repo.checkout("m")


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


class _BlockedModule:
    def __reduce__(self):
        import os
        return (os.system, ("true",))


@pytest.mark.parametrize("payload", [_RunsCode(), _BlockedModule(), torch.nn.Linear(2, 2)],
                         ids=["unknown-global", "blocked-module-global", "pickled-module"])
def test_pickle_bearing_checkpoints_are_refused_as_needing_pickled_code(tmp_path, payload, capsys) -> None:
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2), "x": payload}, buf)
    (tmp_path / "evil.pt").write_bytes(buf.getvalue())
    with pytest.raises(WeightsError, match=r"evil.pt needs pickled code to load and is refused .*re-save it"):
        load_weights_file(tmp_path / "evil.pt")
    assert "this must never run" not in capsys.readouterr().out


def test_the_dependency_floor_excludes_torch_with_the_weights_only_bypass() -> None:
    import pathlib
    import re
    text = (pathlib.Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert re.search(r'"torch>=2\.(6|[7-9]|\d\d)', text) and '"torch>=2.1"' not in text
