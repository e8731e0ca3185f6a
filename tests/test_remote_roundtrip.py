"""Publish / search / pull against a folder remote and a real S3 API (moto server on loopback).

Every test runs on both backends. The moto server is started once per session
on 127.0.0.1 and a free port; each test gets its own bucket and dummy AWS
credentials through the environment (the way users configure s3fs).
"""
from __future__ import annotations

import socket
import threading
import uuid

import pytest
import torch

import modelhub
from helpers import assert_bit_exact, tiny_cnn
from modelhub.errors import IntegrityError
from modelhub.remote import RemoteUnavailableError, add_remote, open_remote, publish, pull, search
from modelhub.remote.transport import RemoteStore, blob_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint():
    try:
        from moto.server import ThreadedMotoServer
        import s3fs  # noqa: F401
    except ImportError as exc:  # pragma: no cover - CI installs .[test]
        pytest.skip(f"S3 tests need moto[server] and s3fs (pip install -e '.[test]'): {exc}")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(params=["folder", "s3"])
def hub(request, tmp_path, monkeypatch):
    """The URL of an empty remote; for S3 a fresh bucket and the AWS_* environment pointing at moto."""
    if request.param == "folder":
        return str(tmp_path / "hub")
    endpoint = request.getfixturevalue("moto_endpoint")
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    import boto3
    bucket = f"hub-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/models"


def _lineage(repo, seed: int = 0, name: str = "lenet", n_ft: int = 2):
    """A base version and ``n_ft`` fine-tunes that change only the head (fc2)."""
    model = tiny_cnn(seed)
    base = repo.commit(model, name=name, message="base", hparams={"lr": 0.1, "opt": "sgd"},
                       metrics={"acc": [0.5, 0.6, float("nan")]}, files={"notes/README.md": b"# base\n"})
    versions = [base]
    for i in range(n_ft):
        with torch.no_grad():
            model.fc2.weight.add_(0.01 * (i + 1))
        versions.append(repo.commit(model, name=name, message=f"ft {i}", parent=base.id,
                                    hparams={"lr": 0.01}, metrics={"acc": 0.7 + i / 100}))
    return versions


def _metric_rows(repo, vid: str) -> list[tuple[str, int, str]]:
    with repo.catalog.read() as con:
        rows = con.execute("SELECT name, step, value FROM metrics WHERE version_id = ? ORDER BY name, step", [vid]).fetchall()
    return [(n, s, repr(v)) for n, s, v in rows]


def _remote_blob_bytes(remote: RemoteStore, blob: str) -> bytes:
    return remote.fs.cat_file(f"{remote.root}/{blob_path(blob)}")


def test_publish_search_pull_round_trip_is_bit_exact(tmp_path, hub):
    a = modelhub.init_repo(tmp_path / "a")
    b = modelhub.init_repo(tmp_path / "b")
    versions = _lineage(a)
    add_remote(a, "hub", hub)
    report = publish(a, open_remote(a, "hub"))
    assert report.versions == ("lenet@1", "lenet@2", "lenet@3")
    assert report.blobs_sent > 0 and report.segment is not None

    add_remote(b, "hub", hub)
    found = search(open_remote(b, "hub"), 'select m where m.name like "len%" and m.hparams["lr"] < 0.05')
    assert sorted(r[found.columns.index("id")] for r in found.rows) == sorted(v.id for v in versions[1:])
    assert b.log() == []  # search moved no versions (and no weights)
    assert list(b.store) == []

    got = pull(b, open_remote(b, "hub"), "lenet@3")
    assert got.id == versions[2].id and got.ref == "lenet@3"
    assert [p.id for p in got.pulled] == [versions[0].id, versions[2].id]  # ancestors first, ids kept
    pulled = b.version("lenet@3")
    assert pulled.parents == (versions[0].id,)
    assert_bit_exact(b.checkout(versions[2].id).state_dict, a.checkout(versions[2].id).state_dict)
    assert_bit_exact(b.checkout(versions[0].id).state_dict, a.checkout(versions[0].id).state_dict)
    assert b.files(versions[0].id) == {"notes/README.md": b"# base\n"}
    assert b.desc(versions[2].id).hparams == a.desc(versions[2].id).hparams
    # the pulled model is queried like a local one
    local = b.query('select m where m.hparams["lr"] < 0.05')
    assert [r[0] for r in local.rows] == [versions[2].id]
    assert _metric_rows(b, versions[0].id) == _metric_rows(a, versions[0].id)  # NaN kept
    assert ("acc", 2, "nan") in _metric_rows(b, versions[0].id)

    # the second fine-tune shares everything but the head with what is already here
    second = pull(b, open_remote(b, "hub"), versions[1].id[:10])
    assert [p.id for p in second.pulled] == [versions[1].id]
    assert second.blobs_reused > 0 and second.blobs_fetched < got.blobs_fetched
    assert_bit_exact(b.checkout(versions[1].id).state_dict, a.checkout(versions[1].id).state_dict)
    again = pull(b, open_remote(b, "hub"), "lenet@2")
    assert again.pulled == () and again.blobs_fetched == 0


def test_publish_sends_only_what_the_remote_lacks(tmp_path, hub):
    a = modelhub.init_repo(tmp_path / "a")
    base, ft1, ft2 = _lineage(a)
    remote = open_remote(a, hub)
    first = publish(a, remote, [ft1.id])
    assert set(first.version_ids) == {base.id, ft1.id}
    second = publish(a, remote, ["lenet@3"])
    assert second.version_ids == (ft2.id,)
    # only the changed head is new: the frozen layers' blobs are already there
    assert 0 < second.blobs_sent < first.blobs_sent
    assert second.blobs_skipped > 0
    third = publish(a, remote)
    assert third.segment is None and third.blobs_sent == 0 and third.already_there == 3
    assert len(remote.list_segments()) == 2


def test_concurrent_publishers_lose_nothing(tmp_path, hub, monkeypatch):
    """Both publishers read the remote's catalog before either writes its segment."""
    repos = [modelhub.init_repo(tmp_path / f"r{i}") for i in range(2)]
    lineages = [_lineage(r, seed=i, name=f"model{i}", n_ft=1) for i, r in enumerate(repos)]
    both_listed = threading.Barrier(2, timeout=60)
    real_write = RemoteStore.write_segment

    def write_after_both_listed(self, name, data):
        both_listed.wait()
        return real_write(self, name, data)

    monkeypatch.setattr(RemoteStore, "write_segment", write_after_both_listed)
    errors: list[BaseException] = []

    def run(repo):
        try:
            publish(repo, open_remote(repo, hub))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in repos]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    reader = modelhub.init_repo(tmp_path / "reader")
    result = search(open_remote(reader, hub), "select m")
    ids = {r[result.columns.index("id")] for r in result.rows}
    expected = {v.id for lin in lineages for v in lin}
    assert ids == expected
    for lin in lineages:
        pull(reader, open_remote(reader, hub), lin[-1].id)
        assert_bit_exact(reader.checkout(lin[-1].id).state_dict, repos[lineages.index(lin)].checkout(lin[-1].id).state_dict)


def test_corrupted_blob_on_the_remote_is_detected_and_repaired(tmp_path, hub):
    a = modelhub.init_repo(tmp_path / "a")
    b = modelhub.init_repo(tmp_path / "b")
    base, = _lineage(a, n_ft=0)
    remote = open_remote(a, hub)
    publish(a, remote)
    with a.catalog.read() as con:
        blob = con.execute("SELECT blob_hash FROM objects ORDER BY size DESC LIMIT 1").fetchone()[0]
    data = bytearray(_remote_blob_bytes(remote, blob))
    data[len(data) // 2] ^= 0xFF  # same size, different content
    remote.put_blob(blob, bytes(data))

    with pytest.raises(IntegrityError, match=f"object {blob[:16]} on remote .* does not match its hash"):
        pull(b, open_remote(b, hub), "lenet")
    assert b.log() == []
    assert not b.store.has(blob)  # the corrupt bytes were never stored

    repaired = publish(a, remote, ["lenet"], repair=True)
    assert repaired.segment is None and repaired.blobs_sent >= 1
    pull(b, open_remote(b, hub), "lenet")
    assert_bit_exact(b.checkout("lenet").state_dict, a.checkout("lenet").state_dict)


def test_interrupted_publish_leaves_no_version_and_resumes(tmp_path, hub, monkeypatch):
    a = modelhub.init_repo(tmp_path / "a")
    _lineage(a, n_ft=1)
    real_put = RemoteStore.put_blob
    lock = threading.Lock()
    sent: list[str] = []

    def flaky_put(self, blob_hash, data):
        with lock:
            if len(sent) >= 5:
                raise RemoteUnavailableError("injected: connection lost mid-publish")
            sent.append(blob_hash)
        return real_put(self, blob_hash, data)

    monkeypatch.setattr(RemoteStore, "put_blob", flaky_put)
    with pytest.raises(RemoteUnavailableError, match="injected: connection lost mid-publish"):
        publish(a, open_remote(a, hub))
    monkeypatch.setattr(RemoteStore, "put_blob", real_put)
    remote = open_remote(a, hub)
    assert remote.list_segments() == []  # no segment: readers see no half-published version
    reader = modelhub.init_repo(tmp_path / "reader")
    assert search(open_remote(reader, hub), "select m").rows == ()

    resumed = publish(a, remote)
    assert resumed.blobs_skipped == len(sent) == 5  # the blobs that made it are not sent again
    assert resumed.blobs_sent > 0
    pull(reader, open_remote(reader, hub), "lenet")
    assert_bit_exact(reader.checkout("lenet").state_dict, a.checkout("lenet").state_dict)


def test_interrupted_pull_leaves_the_repository_unchanged_and_resumes(tmp_path, hub, monkeypatch):
    a = modelhub.init_repo(tmp_path / "a")
    b = modelhub.init_repo(tmp_path / "b")
    _lineage(a, n_ft=1)
    publish(a, open_remote(a, hub))
    real_get = RemoteStore.get_blob
    lock = threading.Lock()
    fetched: list[str] = []

    def flaky_get(self, blob_hash, size):
        with lock:
            if len(fetched) >= 4:
                raise RemoteUnavailableError("injected: connection lost mid-pull")
            fetched.append(blob_hash)
        return real_get(self, blob_hash, size)

    monkeypatch.setattr(RemoteStore, "get_blob", flaky_get)
    with pytest.raises(RemoteUnavailableError, match="injected: connection lost mid-pull"):
        pull(b, open_remote(b, hub), "lenet")
    monkeypatch.setattr(RemoteStore, "get_blob", real_get)
    assert b.log() == [] and b.models() == []  # no catalog row without its blobs
    assert sorted(b.store) == sorted(fetched)  # blobs fetched so far were stored, verified

    resumed = pull(b, open_remote(b, hub), "lenet")
    assert resumed.blobs_reused == 4
    assert [v.ref for v in b.log()] == ["lenet@2", "lenet@1"]
    assert_bit_exact(b.checkout("lenet").state_dict, a.checkout("lenet").state_dict)


def test_a_missing_bucket_is_reported_with_a_fix(tmp_path, moto_endpoint, monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto_endpoint}.items():
        monkeypatch.setenv(k, v)
    a = modelhub.init_repo(tmp_path / "a")
    _lineage(a, n_ft=0)
    with pytest.raises(RemoteUnavailableError, match="not found .*check that the bucket or folder exists"):
        publish(a, open_remote(a, "s3://no-such-bucket-here/models"))
    with pytest.raises(RemoteUnavailableError, match="holds no modelhub catalog .* publish to it first"):
        pull(a, open_remote(a, "s3://no-such-bucket-here/models"), "lenet")


def test_gc_spares_an_old_orphan_blob_that_pull_reuses_for_an_attached_file(tmp_path):
    a = modelhub.init_repo(tmp_path / "a")
    b = modelhub.init_repo(tmp_path / "b")
    a.commit({"w": torch.zeros(3)}, name="m", message="with notes", files={"notes.md": b"# notes\n"})
    hub = str(tmp_path / "hub")
    publish(a, open_remote(a, hub))
    orphan = b.store.put(b"# notes\n")   # left by an earlier, killed pull
    import os
    os.utime(b.store.path_of(orphan), (0, 0))
    report = pull(b, open_remote(b, hub), "m")
    assert report.blobs_reused == 1
    assert b.gc().removed_blobs == 0
    assert b.fsck(deep=True).ok and b.files("m") == {"notes.md": b"# notes\n"}


def test_pull_fetches_again_a_blob_that_gc_removed_before_it_took_the_lock(tmp_path, monkeypatch):
    a = modelhub.init_repo(tmp_path / "a")
    b = modelhub.init_repo(tmp_path / "b")
    a.commit({"w": torch.zeros(3)}, name="m", message="with notes", files={"notes.md": b"# notes\n"})
    hub = str(tmp_path / "hub")
    publish(a, open_remote(a, hub))
    orphan = b.store.put(b"# notes\n")
    real_write = b.catalog.write

    def gc_first(*args, **kwargs):
        b.store.delete(orphan)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(b.catalog, "write", gc_first)
    pull(b, open_remote(b, hub), "m")
    monkeypatch.setattr(b.catalog, "write", real_write)
    assert b.fsck(deep=True).ok and b.files("m") == {"notes.md": b"# notes\n"}


def test_clone_and_pull_everything(tmp_path, hub):
    """`dlv clone` and `dlv pull REMOTE` without a ref (issue 15): every version, ids and lineage kept."""
    from modelhub.remote import clone
    src = modelhub.init_repo(tmp_path / "src")
    versions = _lineage(src, n_ft=2)
    other = src.commit(tiny_cnn(5), name="other", message="x", parent=())
    publish(src, open_remote(src, hub))
    result = clone(hub, tmp_path / "copy")
    assert {v.id for v in result.repo.log()} == {v.id for v in versions} | {other.id}
    assert [r.name for r in modelhub.remote.list_remotes(result.repo)] == ["origin"]
    assert_bit_exact(result.repo.checkout(other.id).state_dict, src.checkout(other.id).state_dict)
    assert result.repo.fsck().ok
    later = src.commit(tiny_cnn(6), name="other", message="y")
    publish(src, open_remote(src, hub))
    report = pull(result.repo, open_remote(result.repo, "origin"), None)
    assert [p.id for p in report.pulled] == [later.id] and report.id == ""
    assert pull(result.repo, open_remote(result.repo, "origin"), None).pulled == ()
    with pytest.raises(modelhub.errors.InputError, match="already exists and is not an empty folder"):
        clone(hub, tmp_path / "copy")
    with pytest.raises(modelhub.errors.ModelhubError):
        clone(str(tmp_path / "no-hub-here"), tmp_path / "failed")
    assert not (tmp_path / "failed").exists()  # nothing half-cloned stays behind


def test_pull_of_an_unknown_name_points_at_the_remotes_listing(tmp_path, hub):
    src = modelhub.init_repo(tmp_path / "src")
    _lineage(src, n_ft=0)
    publish(src, open_remote(src, hub))
    dst = modelhub.init_repo(tmp_path / "dst")
    add_remote(dst, "hub", hub)
    with pytest.raises(modelhub.errors.RefError, match=r"did you mean lenet\? \(`dlv search hub 'select m'`"):
        pull(dst, open_remote(dst, "hub"), "lenett@3")
