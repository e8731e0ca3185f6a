"""Shared fixtures: a fresh repository and a CLI runner (model helpers live in helpers.py)."""
from __future__ import annotations

import io

from pathlib import Path

import pytest
import torch

import modelhub
from modelhub.cli import main

torch.set_num_threads(1)


@pytest.fixture
def repo(tmp_path: Path) -> modelhub.Repo:
    return modelhub.init_repo(tmp_path / "work")


@pytest.fixture
def cli(tmp_path: Path, monkeypatch):
    """Run `dlv ...` in-process inside the work folder; returns (code, stdout, stderr)."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("DLV_AUTHOR", "tester")

    def run(*argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    run.work = work  # type: ignore[attr-defined]
    return run


@pytest.fixture(scope="session")
def gen_catalog(tmp_path_factory):
    """A generated catalog (tests/dqlref/synthetic.py, 400 versions, seed 7) shared by the DQL tests."""
    from dqlref.synthetic import generate
    return generate(tmp_path_factory.mktemp("dqlcat"), 400, seed=7)
