"""Versioned datasets: appending creates versions, the split is stable, CLI add/list."""
from __future__ import annotations

import json
import re
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


# -- hostile or damaged input files (issue 16, item 5): one line, exit code 5, nothing allocated --
def _npy_header(shape, descr="<f4") -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def _bad_inputs(tmp_path):
    """(label, files) pairs that used to end in a traceback."""
    np.savez(tmp_path / "objects.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.arange(2))
    good = npz(tmp_path / "good.npz", 10)
    (tmp_path / "truncated.npz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    # 2**52 rows of 2**3 floats: 35 PiB declared in an 80-byte file
    (tmp_path / "huge.npy").write_bytes(_npy_header((2 ** 52, 8)) + b"\0" * 16)
    # a merely large shape (1 GiB) that numpy would really allocate before noticing the file is short
    (tmp_path / "large.npy").write_bytes(_npy_header((2 ** 28,)) + b"\0" * 16)
    np.save(tmp_path / "y.npy", np.arange(2))
    np.savez(tmp_path / "scalar.npz", x=np.float32(3.0), y=np.arange(1))
    folder = tmp_path / "pngs"
    folder.mkdir()
    _png_gray(folder / "0.png", np.arange(30, dtype=np.uint8).reshape(5, 6))
    data = (folder / "0.png").read_bytes()
    (folder / "0.png").write_bytes(data[: len(data) - 20])   # cut inside IDAT
    (folder / "labels.csv").write_text("0.png,1\n")
    return [
        ("objects", [tmp_path / "objects.npz"], "holds Python objects"),
        ("truncated npz", [tmp_path / "truncated.npz"], "truncated or damaged"),
        ("garbage npz", [tmp_path / "garbage.npz"], "not a readable .npz"),
        ("35 PiB shape", [tmp_path / "huge.npy", tmp_path / "y.npy"], r"declares shape \[4503599627370496, 8\]"),
        ("1 GiB shape", [tmp_path / "large.npy", tmp_path / "y.npy"], "but the file holds 144 bytes"),
        ("scalar x", [tmp_path / "scalar.npz"], "the inputs x are a single value"),
        ("truncated png", [folder], "the PNG is truncated or damaged"),
    ]


def test_damaged_and_hostile_files_are_refused_with_one_line_and_exit_5(cli, tmp_path, monkeypatch):
    assert cli("init")[0] == 0
    real_empty = np.empty

    def bounded_empty(shape, *a, **k):  # nothing may be allocated from a header's word alone
        n = int(np.prod(shape, dtype=object)) if not isinstance(shape, int) else shape
        assert n < 2 ** 20, f"allocated {shape} from a header"
        return real_empty(shape, *a, **k)

    monkeypatch.setattr(np, "empty", bounded_empty)
    for label, files, message in _bad_inputs(tmp_path):
        code, out, err = cli("data", "add", "d", *map(str, files))
        assert code == 5, (label, err)
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, label
        assert re.search(message, err), (label, err)
    assert cli("data", "list", "--json")[1].strip() == "[]"


def test_a_damaged_npy_is_a_dataset_error_from_the_api(repo, tmp_path):
    (tmp_path / "huge.npy").write_bytes(_npy_header((2 ** 52, 8)))
    np.save(tmp_path / "y.npy", np.arange(2))
    with pytest.raises(DatasetError, match="declares shape .* it is truncated or damaged"):
        repo.data_add("d", [tmp_path / "huge.npy", tmp_path / "y.npy"])
