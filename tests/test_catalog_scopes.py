"""Catalog scopes attach the catalog file to one per-process DuckDB instance (catalog/db.py)."""
from __future__ import annotations

import subprocess
import sys

import modelhub
from helpers import tiny_cnn
from modelhub.repo.liveness import blob_columns
from modelhub.catalog.remotes import table_columns as _columns


def test_nested_scopes_on_two_repositories_see_only_their_own_catalog(tmp_path):
    a = modelhub.init_repo(tmp_path / "a")
    b = modelhub.init_repo(tmp_path / "b")
    a.commit(tiny_cnn(0), name="only-in-a", message="a")
    with a.catalog.read() as ca:
        alone = blob_columns(ca)
        with b.catalog.read() as cb:
            assert cb.execute("SELECT count(*) FROM versions").fetchone()[0] == 0
            assert ca.execute("SELECT model FROM versions").fetchall() == [("only-in-a",)]
            # information_schema spans every attached database: lookups must stay in their own
            assert blob_columns(ca) == alone == blob_columns(cb)
            assert _columns(cb, "versions") == list(dict.fromkeys(_columns(cb, "versions")))


def test_the_file_is_released_between_scopes_so_another_process_can_write(repo):
    repo.commit(tiny_cnn(0), name="m", message="one")
    with repo.catalog.read() as con:
        con.execute("SELECT 1").fetchall()
    code = (
        "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
        "con.execute(\"UPDATE versions SET message = 'changed elsewhere'\"); con.close()"
    )
    subprocess.run([sys.executable, "-c", code, str(repo.paths.catalog)], check=True, timeout=60)
    assert repo.version("m").message == "changed elsewhere"


def test_a_forked_child_uses_its_own_instance(repo):
    import os
    repo.commit(tiny_cnn(0), name="m", message="one")
    repo.log()  # the parent's instance exists before the fork
    pid = os.fork()
    if pid == 0:  # child: must be able to read and write through a fresh instance
        try:
            ok = repo.log()[0].message == "one"
            repo.commit(tiny_cnn(1), name="m", message="from child")
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [v.message for v in repo.log("m")] == ["from child", "one"]
