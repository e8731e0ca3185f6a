"""Versioned datasets: appending creates versions, the split is stable, CLI add/list."""
from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from modelhub.engine.data import stable_split
from modelhub.engine.errors import DatasetError


def npz(path, n, seed=0, shape=(1, 4, 4)):
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.standard_normal((n, *shape)).astype(np.float32), y=rng.integers(0, 3, n))
    return path


def test_append_creates_versions_and_old_versions_stay_readable(repo, tmp_path):
    v1 = repo.data_add("digits", [npz(tmp_path / "a.npz", 50)])
    v2 = repo.data_add("digits", [npz(tmp_path / "b.npz", 20, seed=1)], message="cycle 2")
    assert (v1.ref, v1.n_records, v2.ref, v2.n_records, v2.added) == ("digits@1", 50, "digits@2", 70, 20)
    d1, d2, latest = repo.dataset("digits@1"), repo.dataset("digits@2"), repo.dataset("digits")
    assert d1.n == 50 and d2.n == 70 and latest.version == 2
    assert d1.uid == d2.uid
    np.testing.assert_array_equal(d2.x[:50], d1.x)
    assert [v.ref for v in repo.datasets()] == ["digits@2"]


def test_split_is_stable_as_data_grows():
    tr1, va1 = stable_split("uid", 1000, 0.2)
    tr2, va2 = stable_split("uid", 1500, 0.2)
    assert set(va1) == set(va2[va2 < 1000]) and set(tr1) == set(tr2[tr2 < 1000])
    assert 0.15 < len(va2) / 1500 < 0.25


def test_bad_inputs_say_how_to_fix(repo, tmp_path):
    with pytest.raises(DatasetError, match="name the arrays x"):
        np.savez(tmp_path / "bad.npz", a=np.zeros(3))
        repo.data_add("d", [tmp_path / "bad.npz"])
    repo.data_add("d", [npz(tmp_path / "a.npz", 5)])
    with pytest.raises(DatasetError, match=r"records of shape \[1, 4, 4\].*convert them or use another name"):
        repo.data_add("d", [npz(tmp_path / "c.npz", 5, shape=(2, 2))])
    with pytest.raises(DatasetError, match="has versions 1 to 1; choose one of them"):
        repo.dataset("d@7")
    with pytest.raises(DatasetError, match="no dataset named 'zzz'.*dlv data add zzz"):
        repo.dataset("zzz")


def _png_gray(path, pixels: np.ndarray) -> None:
    h, w = pixels.shape
    raw = b"".join(b"\x01" + bytes(np.diff(np.concatenate([[0], row])).astype(np.uint8)) for row in pixels)  # Sub filter
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_image_folder_with_labels(repo, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 5, 6)).astype(np.uint8)
    for i, img in enumerate(images):
        _png_gray(folder / f"{i}.png", img)
    (folder / "labels.csv").write_text("filename,label\n0.png,1\n1.png,0\n2.png,2\n")
    repo.data_add("imgs", [folder])
    d = repo.dataset("imgs")
    assert d.x.shape == (3, 1, 5, 6)
    np.testing.assert_allclose(d.x[:, 0], images / 255.0, rtol=0, atol=1e-7)
    assert d.y.tolist() == [1, 0, 2]


def test_cli_data_add_and_list(cli, tmp_path):
    assert cli("init")[0] == 0
    code, out, err = cli("data", "add", "digits", str(npz(tmp_path / "a.npz", 30)))
    assert code == 0 and "digits@1: added 30 record(s)" in out, err
    code, out, _ = cli("data", "add", "digits", str(npz(tmp_path / "b.npz", 10, seed=3)), "--json")
    assert code == 0 and json.loads(out)["ref"] == "digits@2"
    code, out, _ = cli("data", "list", "--json")
    assert code == 0 and [(d["ref"], d["n_records"]) for d in json.loads(out)] == [("digits@2", 40)]
    code, out, _ = cli("data", "log", "digits")
    assert code == 0 and "digits@1" in out and "digits@2" in out
    code, _, err = cli("data", "add", "digits", str(tmp_path / "missing.npz"))
    assert code != 0 and "does not exist; check the path" in err
