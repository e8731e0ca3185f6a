"""Object names and tensor ids made by BLAKE3 (80 hex digits) beside those of BLAKE2b-256 (64),
which every repository written before BLAKE3 holds: both are verified on every read, and an
upgraded repository keeps making BLAKE2b-256 tensor ids so that what it stored deduplicates."""
from __future__ import annotations

import json
import os

import pytest
import torch

import modelhub
from helpers import assert_bit_exact, tiny_cnn
from modelhub.storage import context_coding, objects, segmented, whole
from modelhub.storage_boundary import CorruptObjectError
from modelhub.storage.objects import blake2b_hex, blake3_hex, hash_of_name, name_matches
from modelhub.storage.tensors import tensor_hash, tensor_matches


def _tensor_ids(repo) -> set[str]:
    with repo.catalog.read() as con:
        return {r[0] for r in con.execute("SELECT tensor_hash FROM tensor_data").fetchall()}


def _legacy_repo(path, monkeypatch):
    """A repository as modelhub wrote it before BLAKE3: schema version 3, BLAKE2b-256 object
    names and tensor ids (the codecs name their blobs with content_hash, patched back here)."""
    legacy = lambda data: blake2b_hex(data)  # noqa: E731
    with monkeypatch.context() as m:
        for module in (objects, segmented, whole, context_coding):
            if hasattr(module, "content_hash"):
                m.setattr(module, "content_hash", legacy)
        repo = modelhub.init_repo(path)
        with repo.catalog.write() as con:
            con.execute("UPDATE meta SET value = 'blake2b-256' WHERE key = 'tensor_hash'")
        repo.commit(tiny_cnn(0), name="m", message="before blake3")
        with repo.catalog.write() as con:   # schema 3 had no tensor_hash row
            con.execute("DELETE FROM meta WHERE key = 'tensor_hash'")
            con.execute("DROP TABLE encoding_sizes")   # schema 5
            con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    return path


def test_new_names_are_blake3_and_old_names_still_verify() -> None:
    data = b"some tensor bytes"
    new, old = objects.content_hash(data), blake2b_hex(data)
    assert len(new) == 80 and new == blake3_hex(data) and hash_of_name(new) == "blake3-320"
    assert len(old) == 64 and hash_of_name(old) == "blake2b-256"
    assert name_matches(new, data) and name_matches(old, data)
    assert not name_matches(new, data + b"!") and not name_matches(old, data + b"!")
    for bad in ("../" + new[3:], new.upper(), new[:-1], "", old + "0"):
        assert hash_of_name(bad) is None and not name_matches(bad, data)
    raw = torch.arange(6, dtype=torch.float32).numpy().tobytes()
    for name in ("blake3-320", "blake2b-256"):
        tid = tensor_hash(raw, "float32", [6], hash_name=name)
        assert tensor_matches(tid, raw, "float32", [6]) and not tensor_matches(tid, raw, "float32", [2, 3])


def test_a_new_repository_names_tensors_and_blobs_with_blake3(repo) -> None:
    repo.commit(tiny_cnn(0), name="m", message="a")
    assert {len(t) for t in _tensor_ids(repo)} == {80}
    assert {len(b) for b in repo.store} == {80}
    assert repo.fsck(deep=True).ok


def test_a_repository_from_before_blake3_keeps_its_ids_and_reads_both_names(tmp_path, monkeypatch) -> None:
    root = _legacy_repo(tmp_path / "old", monkeypatch)
    repo = modelhub.open_repo(root)          # upgraded to schema 4: keeps BLAKE2b-256 tensor ids
    old_ids, old_blobs = _tensor_ids(repo), set(repo.store)
    assert {len(t) for t in old_ids} == {64} and {len(b) for b in old_blobs} == {64}

    repo.commit(tiny_cnn(0), name="again", message="the same weights")   # deduplicated by id
    assert _tensor_ids(repo) == old_ids and set(repo.store) == old_blobs
    changed = tiny_cnn(0)
    with torch.no_grad():
        changed.fc2.weight.add_(1.0)
    repo.commit(changed, name="m", message="after blake3")
    ids = _tensor_ids(repo)
    assert {len(t) for t in ids} == {64} and len(ids - old_ids) == 1
    assert {len(b) for b in set(repo.store) - old_blobs} == {80}   # new blobs: BLAKE3 names

    assert_bit_exact(repo.checkout("m@1").state_dict, tiny_cnn(0).state_dict())
    assert_bit_exact(repo.checkout("m@2").state_dict, changed.state_dict())
    assert repo.fsck(deep=True).ok

    old_blob = sorted(old_blobs)[0]          # damage to a BLAKE2b-named blob is still caught
    path = repo.store.path_of(old_blob)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptObjectError, match=f"{old_blob[:16]}.*checksum mismatch"):
        repo.store.get(old_blob)
    assert ("corrupt_blob", old_blob) in {(p.kind, p.subject) for p in repo.fsck().errors}


def test_remote_rows_may_name_both_kinds_but_nothing_else(tmp_path, monkeypatch) -> None:
    from modelhub.remote.transport import blob_path
    new, old = "a" * 80, "b" * 64
    assert blob_path(new) == f"objects/aa/{new[2:]}" and blob_path(old) == f"objects/bb/{old[2:]}"
    from modelhub.remote.errors import RemoteFormatError
    with pytest.raises(RemoteFormatError, match="invalid object name 'aaa"):
        blob_path("a" * 72)
    manifest = json.dumps({"format": 1, "codec": "zstd-whole", "level": 3, "segments": [new]})
    from modelhub.remote.validate import _check_manifest
    _check_manifest({"encoding": manifest, "shape": "[2]", "dtype": "float32", "nbytes": 8}, "test")


def test_a_clone_of_a_remote_from_before_blake3_keeps_deduplicating_its_tensors(tmp_path, monkeypatch) -> None:
    from modelhub.remote import add_remote, clone, open_remote, publish
    old = modelhub.open_repo(_legacy_repo(tmp_path / "old", monkeypatch))
    add_remote(old, "hub", str(tmp_path / "hub"))
    publish(old, open_remote(old, "hub"))
    copy = clone(str(tmp_path / "hub"), tmp_path / "copy").repo
    pulled = _tensor_ids(copy)
    assert {len(t) for t in pulled} == {64}
    copy.commit(tiny_cnn(0), name="again", message="the base, committed in the clone")
    assert _tensor_ids(copy) == pulled                  # found by their BLAKE2b ids: nothing stored twice
    assert_bit_exact(copy.checkout("m").state_dict, tiny_cnn(0).state_dict())
    fresh = clone(str(tmp_path / "hub"), tmp_path / "copy2").repo
    with fresh.catalog.read() as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'tensor_hash'").fetchone() == ("blake2b-256",)
    new = modelhub.init_repo(tmp_path / "new")
    with new.catalog.read() as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'tensor_hash'").fetchone() == ("blake3-320",)
