"""`dlv remote`, `dlv publish`, `dlv search`, `dlv pull` end to end through the CLI (folder remote)."""
from __future__ import annotations

import json

import pytest

import modelhub
from helpers import assert_bit_exact, tiny_cnn


@pytest.fixture
def work(cli, tmp_path):
    assert cli("init")[0] == 0
    repo = modelhub.open_repo(cli.work)
    base = repo.commit(tiny_cnn(0), name="lenet", message="base", hparams={"lr": 0.1}, metrics={"acc": 0.8})
    return cli, repo, base, str(tmp_path / "hub")


def test_remote_add_list_remove(work):
    cli, _, _, hub = work
    assert cli("remote", "add", "hub", hub) == (0, f"added remote hub -> {hub}\n", "")
    code, _, err = cli("remote", "add", "s3hub", "s3://bucket/models", "--option", "secret=hunter2")
    assert code == 10 and "look like credentials, which are never stored in the catalog" in err
    assert "AWS_SECRET_ACCESS_KEY" in err and "hunter2" not in err
    code, out, _ = cli("remote", "add", "s3hub", "s3://bucket/models", "--endpoint-url", "http://127.0.0.1:9",
                       "--option", "anon=false", "--json")
    assert code == 0 and json.loads(out)["options"] == {"anon": False, "endpoint_url": "http://127.0.0.1:9"}
    code, out, _ = cli("remote", "list", "--json")
    listed = json.loads(out)
    assert [(r["name"], r["url"]) for r in listed] == [("hub", hub), ("s3hub", "s3://bucket/models")]
    assert "hunter2" not in out
    code, out, _ = cli("remote", "list")
    assert code == 0 and "hub" in out and "hunter2" not in out
    assert cli("remote", "remove", "s3hub")[0] == 0
    assert [r["name"] for r in json.loads(cli("remote", "list", "--json")[1])] == ["hub"]


@pytest.mark.parametrize("argv, code, message", [
    (("remote", "add", "hub", "ftp://host/x"), 10, "unsupported remote URL 'ftp://host/x'; use a folder path"),
    (("remote", "add", "1bad", "/tmp/x"), 10, "invalid remote name '1bad'"),
    (("remote", "add", "hub"), 2, r"takes 2 argument\(s\); usage: dlv remote add NAME URL"),
    # an unknown remote is an unknown name: exit 3, as an unknown version (issue 15)
    (("remote", "remove", "nope"), 3, r"unknown remote 'nope' \(known: none configured\); add it with `dlv remote add nope URL`"),
    (("publish", "nope"), 3, "unknown remote 'nope'"),
    (("search", "./hub", "slice m2 from m1 where m1.name == \"x\" mutate m2.input = m1[\"a\"] and m2.output = m1[\"b\"]"),
     2, "dlv search runs select queries only, not 'slice'"),
])
def test_bad_remote_commands_fail_with_one_line(work, argv, code, message):
    import re

    cli = work[0]
    got, out, err = cli(*argv)
    assert got == code
    assert err.startswith("error: ") and err.count("\n") == 1
    assert re.search(message, err)


def test_adding_a_remote_twice_is_refused(work):
    cli, _, _, hub = work
    cli("remote", "add", "hub", hub)
    code, _, err = cli("remote", "add", "hub", hub)
    assert code == 10 and "remote 'hub' already exists; remove it first with `dlv remote remove hub`" in err


def test_publish_search_pull_through_the_cli(work, tmp_path):
    cli, repo, base, hub = work
    cli("remote", "add", "hub", hub)
    code, out, _ = cli("publish", "hub", "--json")
    report = json.loads(out)
    assert code == 0 and report["versions"] == ["lenet@1"] and report["blobs_sent"] > 0
    assert report["total_bytes"] == report["bytes_sent"] + report["segment_bytes"]
    code, out, _ = cli("publish", "hub")
    assert code == 0 and out == "remote hub is up to date (1 version(s) already there)\n"

    other = modelhub.init_repo(tmp_path / "other")
    code, out, _ = cli("search", hub, 'select m where m.metrics["acc"] > 0.5', "--repo", str(other.root), "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)["rows"]] == [base.id]
    code, out, _ = cli("search", hub, "select m", "--repo", str(other.root))
    assert code == 0 and "lenet" in out

    code, out, _ = cli("pull", hub, "lenet@1", "--repo", str(other.root), "--json")
    pulled = json.loads(out)
    assert code == 0 and pulled["id"] == base.id and pulled["ref"] == "lenet@1"
    assert_bit_exact(other.checkout("lenet").state_dict, repo.checkout("lenet").state_dict)
    code, out, _ = cli("pull", hub, "lenet@1", "--repo", str(other.root))
    assert code == 0 and out == f"lenet@1 ({base.id[:12]}) is already here\n"
    code, _, err = cli("pull", hub, "lenet@7", "--repo", str(other.root))
    assert code == 3 and "'lenet@7' does not exist" in err
    code, _, err = cli("search", str(tmp_path / "empty"), "select m")
    assert code == 10 and "holds no modelhub catalog (no modelhub-remote.json); check the URL, or publish" in err


def test_credentials_stored_by_an_older_version_leave_the_catalog_file_and_its_backups(work, monkeypatch):
    cli, repo, _, _ = work
    assert cli("remote", "add", "s3hub", "s3://bucket/models", "--endpoint-url", "http://127.0.0.1:9")[0] == 0
    with repo.catalog.write() as con:   # what `--option secret=...` stored before
        con.execute("UPDATE remotes SET config = ? WHERE name = 's3hub'",
                    [json.dumps({"endpoint_url": "http://127.0.0.1:9", "key": "AKIAHUNTER2", "secret": "hunter2hunter2"})])
    monkeypatch.setenv("DLV_CATALOG_BACKUP_INTERVAL", "0")
    repo.add([_write(cli.work / "n.txt", b"x")])          # a write: now a backup holds the secret too
    backups = repo.paths.dlv / "backups"
    assert any(b"hunter2hunter2" in p.read_bytes() for p in backups.iterdir())
    code, _, err = cli("publish", "s3hub")
    assert code == 10 and "had credentials stored in the catalog in plain text" in err and "AWS_PROFILE" in err
    assert "hunter2" not in err
    for path in [repo.paths.catalog, *backups.iterdir()]:
        assert b"hunter2hunter2" not in path.read_bytes() and b"AKIAHUNTER2" not in path.read_bytes(), path
    code, out, _ = cli("remote", "list", "--json")
    assert json.loads(out)[0]["options"] == {"endpoint_url": "http://127.0.0.1:9"}
    assert [v.ref for v in repo.log()] == ["lenet@1"] and repo.staged() == [("n.txt", 1)]


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_clone_and_pull_all_through_the_cli(work, tmp_path):
    cli, repo, base, hub = work
    assert cli("publish", hub)[0] == 0
    code, out, _ = cli("clone", hub, str(tmp_path / "copy"))
    assert code == 0 and f"cloned {hub} into {tmp_path / 'copy'}" in out and "lenet@1" in out
    code, out, _ = cli("-C", str(tmp_path / "copy"), "pull", "origin")
    assert code == 0 and out == "already up to date with origin\n"
    code, _, err = cli("pull", hub, "lenet", "--all")
    assert code == 2 and "give a REF or --all, not both" in err
    new = repo.commit(tiny_cnn(1), name="lenet", message="two")
    assert cli("publish", hub)[0] == 0
    code, out, _ = cli("-C", str(tmp_path / "copy"), "--json", "pull", "origin", "--all")
    assert code == 0 and [p["id"] for p in json.loads(out)["pulled"]] == [new.id]
    code, _, err = cli("pull", hub, "nosuch@3")
    assert code == 3 and "`dlv search" in err and "`dlv list`" not in err
