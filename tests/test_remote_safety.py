"""A hostile or damaged remote cannot write outside the repository or smuggle bad rows;
sequence numbers, lineage and archived (delta-encoded) tensors survive the trip."""
from __future__ import annotations

import json

import pytest
import torch

import modelhub
from helpers import assert_bit_exact, tiny_cnn
from modelhub.catalog import SCHEMA_VERSION
from modelhub.errors import IntegrityError
from modelhub.remote import RemoteFormatError, open_remote, publish, pull, search
from modelhub.remote.export import ancestors, export_versions
from modelhub.remote.segments import CatalogExport, TableRows, decode_segment, encode_segment
from modelhub.remote.transport import HEADER_NAME, open_store


def _commit_lineage(repo, name="lenet", seed=0):
    model = tiny_cnn(seed)
    base = repo.commit(model, name=name, message="base", files={"cfg/train.yaml": b"lr: 0.1\n"})
    with torch.no_grad():
        model.fc2.bias.add_(1.0)
    ft = repo.commit(model, name=name, message="ft", parent=base.id)
    return base, ft


def _edit(export: CatalogExport, table: str, column: str, fn) -> CatalogExport:
    """The export with ``fn(value)`` applied to ``column`` of the first row of ``table``."""
    out = []
    for t in export.tables:
        if t.name == table:
            i = t.columns.index(column)
            first = list(t.rows[0])
            first[i] = fn(first[i])
            t = TableRows(t.name, t.columns, (tuple(first),) + t.rows[1:])
        out.append(t)
    return CatalogExport(tuple(out))


def _hostile_remote(tmp_path, repo, edit=lambda e: e):
    """A folder remote holding every blob of ``repo`` and one segment with edited rows."""
    with repo.catalog.read() as con:
        export = export_versions(con, ancestors(con, [r[0] for r in con.execute("SELECT id FROM versions").fetchall()]))
    store = open_store("evil", str(tmp_path / "evil"))
    store.ensure_header()
    for blob in repo.store:
        store.put_blob(blob, repo.store.get(blob))
    name, body = encode_segment(edit(export), publisher="evil", schema_version=SCHEMA_VERSION)
    store.write_segment(name, body)
    return str(tmp_path / "evil")


@pytest.fixture
def pair(tmp_path):
    a = modelhub.init_repo(tmp_path / "a")
    b = modelhub.init_repo(tmp_path / "b")
    return a, b


@pytest.mark.parametrize("path", ["../../outside.txt", "/etc/passwd", "cfg/../../x", "a\\..\\..\\x", "C:/x"])
def test_file_paths_that_leave_the_working_folder_are_refused(tmp_path, pair, path):
    a, b = pair
    _commit_lineage(a)
    url = _hostile_remote(tmp_path, a, lambda e: _edit(e, "files", "path", lambda _: path))
    with pytest.raises(RemoteFormatError, match=r"file path .* (leaves the working folder|is not a relative '/'-separated path)"):
        pull(b, open_remote(b, url), "lenet")
    with pytest.raises(RemoteFormatError, match="do not pull from it"):
        search(open_remote(b, url), "select m")
    assert b.log() == [] and list(b.store) == []


def test_object_names_that_are_not_hashes_are_refused(tmp_path, pair):
    a, b = pair
    _commit_lineage(a)
    url = _hostile_remote(tmp_path, a, lambda e: _edit(e, "objects", "blob_hash", lambda _: "../../../etc/passwd"))
    with pytest.raises(RemoteFormatError, match=r"blob_hash '\.\./\.\./\.\./etc/passwd' is not a name \(64 or 80 hex digits\)"):
        pull(b, open_remote(b, url), "lenet")


def test_manifests_naming_non_hash_blobs_are_refused(tmp_path, pair):
    a, b = pair
    _commit_lineage(a)

    def evil(enc: str) -> str:
        m = json.loads(enc)
        m["segments"] = ["../../x"] * max(1, len(m.get("segments", [])))
        m["codec"] = "made-up"
        return json.dumps(m)

    url = _hostile_remote(tmp_path, a, lambda e: _edit(e, "tensor_data", "encoding", evil))
    with pytest.raises(RemoteFormatError, match=r"tensor encoding names '\.\./\.\./x', which is not an object name"):
        pull(b, open_remote(b, url), "lenet")


def test_a_tampered_network_definition_is_refused(tmp_path, pair):
    a, b = pair
    _commit_lineage(a)

    def evil(definition: str) -> str:
        return definition.replace('"Conv2d"', '"Linear"', 1)

    url = _hostile_remote(tmp_path, a, lambda e: _edit(e, "graphs", "definition", evil))
    with pytest.raises(RemoteFormatError, match="the network definition does not match its hash"):
        pull(b, open_remote(b, url), "lenet")


def test_a_wrong_declared_size_is_an_integrity_error(tmp_path, pair):
    a, b = pair
    _commit_lineage(a)
    url = _hostile_remote(tmp_path, a, lambda e: _edit(e, "objects", "size", lambda s: s + 1))
    with pytest.raises(IntegrityError, match=r"has \d+ bytes but the catalog declares \d+"):
        pull(b, open_remote(b, url), "lenet")
    assert b.log() == []


def test_tensor_sizes_must_match_dtype_and_shape(tmp_path, pair):
    a, b = pair
    _commit_lineage(a)
    url = _hostile_remote(tmp_path, a, lambda e: _edit(e, "tensor_data", "nbytes", lambda n: n * 1000))
    with pytest.raises(RemoteFormatError, match="does not match dtype"):
        pull(b, open_remote(b, url), "lenet")


def test_a_newer_remote_format_asks_for_an_upgrade(tmp_path, pair):
    a, b = pair
    _commit_lineage(a)
    remote = open_remote(a, str(tmp_path / "hub"))
    publish(a, remote)
    (tmp_path / "hub" / HEADER_NAME).write_text(json.dumps({"format": "modelhub-remote", "version": 99}))
    with pytest.raises(RemoteFormatError, match=r"remote format 99 .* upgrade modelhub"):
        search(open_remote(b, str(tmp_path / "hub")), "select m")


def test_a_garbage_segment_is_reported_by_name(tmp_path, pair):
    a, b = pair
    _commit_lineage(a)
    remote = open_remote(a, str(tmp_path / "hub"))
    seg = publish(a, remote).segment
    (tmp_path / "hub" / "catalog" / "segments" / seg).write_bytes(b"not zstd at all")
    with pytest.raises(RemoteFormatError, match=f"segment {seg} is not zstd data"):
        search(open_remote(b, str(tmp_path / "hub")), "select m")


def test_segments_round_trip_through_their_encoding(pair):
    a, _ = pair
    _commit_lineage(a)
    with a.catalog.read() as con:
        export = export_versions(con, ancestors(con, [a.resolve("lenet")]))
    name, body = encode_segment(export, publisher="me", schema_version=SCHEMA_VERSION)
    seg = decode_segment(name, body)
    assert seg.publisher == "me" and seg.export.version_ids == export.version_ids
    assert {t.name: len(t.rows) for t in seg.export.tables} == {t.name: len(t.rows) for t in export.tables}


def test_pulled_versions_keep_ids_and_take_the_next_free_seq(tmp_path, pair):
    a, b = pair
    base, ft = _commit_lineage(a)
    own = b.commit(tiny_cnn(5), name="lenet", message="mine")  # b's own lenet@1
    remote = open_remote(a, str(tmp_path / "hub"))
    publish(a, remote)
    report = pull(b, open_remote(b, str(tmp_path / "hub")), "lenet@2")
    assert [(p.id, p.remote_ref, p.ref) for p in report.pulled] == [
        (base.id, "lenet@1", "lenet@2"), (ft.id, "lenet@2", "lenet@3")]
    assert b.resolve("lenet@1") == own.id
    assert b.version(ft.id).parents == (base.id,)
    assert_bit_exact(b.checkout(ft.id).state_dict, a.checkout(ft.id).state_dict)


def test_two_publishers_claiming_the_same_seq_both_stay_visible(tmp_path, pair):
    a, b = pair
    va = a.commit(tiny_cnn(1), name="lenet", message="from a")
    vb = b.commit(tiny_cnn(2), name="lenet", message="from b")
    hub = str(tmp_path / "hub")
    publish(a, open_remote(a, hub))
    publish(b, open_remote(b, hub))
    result = search(open_remote(a, hub), 'select m where m.name == "lenet" order by m.seq')
    assert [(r[0], r[2]) for r in result.rows] == [(va.id, 1), (vb.id, 2)]  # older segment keeps @1
    report = pull(a, open_remote(a, hub), "lenet@2")
    assert report.id == vb.id and report.ref == "lenet@2"


def test_archived_delta_encoded_versions_round_trip(tmp_path, pair):
    from modelhub.repo.archive import archive

    a, b = pair
    model = tiny_cnn(0)
    snaps = []
    for _ in range(3):
        with torch.no_grad():
            model.fc1.weight.mul_(1.0001)
        snaps.append({k: v.clone() for k, v in model.state_dict().items()})
    base = a.commit(snaps[-1], name="cnn", message="base", snapshots=snaps[:-1])
    with torch.no_grad():
        model.fc2.weight.mul_(1.001)
    ft = a.commit(model, name="cnn", message="ft", parent=base.id)
    archive(a, alpha=8.0)
    with a.catalog.read() as con:
        deltas = con.execute("SELECT count(*) FROM tensor_data WHERE json_extract(encoding, '$.delta') IS NOT NULL "
                             "AND json_extract(encoding, '$.delta') <> 'null'").fetchone()[0]
    assert deltas > 0  # the trip below really carries delta chains
    publish(a, open_remote(a, str(tmp_path / "hub")), [ft.id])
    pull(b, open_remote(b, str(tmp_path / "hub")), "cnn")
    assert_bit_exact(b.checkout(ft.id).state_dict, a.checkout(ft.id).state_dict)
    for snap in range(3):
        assert_bit_exact(b.checkout(base.id, snapshot=snap).state_dict, a.checkout(base.id, snapshot=snap).state_dict)



# -- bounded memory against a hostile remote (issue 16, item 4) ------------------------------------
def test_a_blob_swapped_for_a_huge_sparse_file_is_refused_after_reading_only_its_declared_size(
        tmp_path, pair, monkeypatch):
    from modelhub.remote.transport import blob_path
    a, b = pair
    _commit_lineage(a)
    publish(a, open_remote(a, str(tmp_path / "hub")))
    blob = max(a.store, key=a.store.size)
    declared = a.store.size(blob)
    with open(tmp_path / "hub" / blob_path(blob), "r+b") as fh:
        fh.truncate(64 << 20)   # sparse: costs no disk, would cost 64 MiB of memory if read whole
    from fsspec.implementations.local import LocalFileSystem
    read = []
    real = LocalFileSystem.cat_file

    def recording(self, path, *args, **kwargs):
        data = real(self, path, *args, **kwargs)
        if "/objects/" in str(path):
            read.append(len(data))
        return data

    monkeypatch.setattr(LocalFileSystem, "cat_file", recording)
    with pytest.raises(IntegrityError, match=f"has more than {declared} bytes but the catalog declares {declared}"):
        pull(b, open_remote(b, str(tmp_path / "hub")), "lenet")
    assert read and max(read) <= max(a.store.size(x) for x in a.store) + 1
    assert b.log() == []


def test_the_catalog_budget_caps_all_segments_read_together(tmp_path, pair, monkeypatch):
    a, b = pair
    remote = open_remote(a, str(tmp_path / "hub"))
    a.commit(tiny_cnn(0), name="m", message="one")
    publish(a, remote)
    a.commit(tiny_cnn(1), name="n", message="two")
    publish(a, remote)
    segments = sorted((tmp_path / "hub" / "catalog" / "segments").iterdir())
    assert len(segments) == 2
    import zstandard
    body = [len(zstandard.ZstdDecompressor().decompress(p.read_bytes(), max_output_size=1 << 26)) for p in segments]
    monkeypatch.setenv("DLV_REMOTE_MAX_CATALOG_BYTES", str(max(body) + min(body) // 2))  # each fits, both do not
    with pytest.raises(RemoteFormatError, match=r"the remote's catalog is larger than \d+ bytes uncompressed"):
        search(open_remote(b, str(tmp_path / "hub")), "select m")
    monkeypatch.setenv("DLV_REMOTE_MAX_CATALOG_BYTES", str(sum(body)))
    assert len(search(open_remote(b, str(tmp_path / "hub")), "select m").rows) == 2
