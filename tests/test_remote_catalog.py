"""modelhub/catalog/remotes.py: the catalog queries behind remotes (remote/ itself writes no SQL)."""
from __future__ import annotations

import ast
from datetime import datetime
from pathlib import Path

import pytest

import modelhub.remote
from helpers import tiny_cnn
from modelhub.catalog import remotes as Q


def test_remote_package_runs_no_sql() -> None:
    calls = []
    for path in sorted(Path(modelhub.remote.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("execute", "executemany", "sql")):
                calls.append(f"{path.name}:{node.lineno}")
    assert calls == []


def test_stored_remotes_round_trip(repo) -> None:
    with repo.catalog.write() as con:
        Q.add_stored_remote(con, Q.StoredRemote("hub", "/srv/hub", {}))
        Q.add_stored_remote(con, Q.StoredRemote("cloud", "s3://b/p", {"region": "eu", "endpoint_url": "http://x"}))
    with repo.catalog.read() as con:
        assert Q.remote_names(con) == ["cloud", "hub"]
        assert Q.stored_remote(con, "cloud") == Q.StoredRemote("cloud", "s3://b/p", {"endpoint_url": "http://x",
                                                                                    "region": "eu"})
        assert Q.stored_remote(con, "nope") is None
    with repo.catalog.write() as con:
        Q.set_remote_options(con, "cloud", {"region": "us"})
        Q.delete_stored_remote(con, "hub")
    with repo.catalog.read() as con:
        assert Q.stored_remotes(con) == [Q.StoredRemote("cloud", "s3://b/p", {"region": "us"})]


def test_lineage_and_presence_queries(repo) -> None:
    a = repo.commit(tiny_cnn(0), name="m", message="a")
    b = repo.commit(tiny_cnn(1), name="m", message="b")
    with repo.catalog.read() as con:
        assert Q.parent_links(con) == {b.id: [a.id]}
        assert Q.all_version_ids(con) == {a.id, b.id}
        assert Q.version_ids_by_creation(con) == [a.id, b.id]
        assert Q.present_version_ids(con, [b.id, "f" * 64]) == {b.id}
        assert Q.present_version_ids(con, []) == set()
        assert (Q.seq_taken(con, "m", 2), Q.seq_taken(con, "m", 3), Q.next_seq(con, "m"), Q.next_seq(con, "new")) == (
            True, False, 3, 1)
        rows = Q.select_rows(con, "versions", "id", [a.id])
        assert rows.name == "versions" and rows.column("id") == [a.id] and "model" in rows.columns


def test_insert_rows_uses_only_the_target_columns_and_names_rows_that_do_not_fit(repo) -> None:
    extra = Q.TableRows("models", ("name", "from_a_newer_publisher", "created_at"), ())
    when = datetime(2026, 1, 1)
    with repo.catalog.write() as con:
        Q.insert_rows(con, extra, [("new", 1, when)])
        Q.insert_rows(con, extra, [("new", 2, when)], ignore=True)    # present: skipped
        assert Q.present_keys(con, "models", "name", ["new", "other"]) == {"new"}
    with pytest.raises(Q.RowsRejectedError, match="rows of table models do not fit this catalog"):
        with repo.catalog.write() as con:
            Q.insert_rows(con, extra, [("new", 3, when)])               # duplicate key without ignore
