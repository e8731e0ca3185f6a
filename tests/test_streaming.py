"""Streaming commit and checkout: safetensors files and sharded checkpoints, one tensor at a time."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from modelhub import weightfiles
from modelhub.errors import InputError, IntegrityError, WeightsError
from modelhub.repo import checkout_files, tensorstore
from modelhub.tensorio import safetensors_bytes


def _state(seed: int, n: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {f"layers.{i}.weight": torch.randn(48, 16 + i, generator=g) for i in range(n)}
    sd["embed"] = torch.randn(64, 8, generator=g).to(torch.bfloat16)
    sd["norm"] = torch.randn(8, generator=g).to(torch.float16)
    sd["steps"] = torch.arange(5, dtype=torch.int64)
    return sd


def _sharded(folder: Path, sd: dict, per_shard: int = 3, index: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    names = list(sd)
    chunks = [names[i:i + per_shard] for i in range(0, len(names), per_shard)]
    weight_map = {}
    for k, chunk in enumerate(chunks, 1):
        fname = f"model-{k:05d}-of-{len(chunks):05d}.safetensors"
        save_file({n: sd[n] for n in chunk}, folder / fname, metadata={"format": "pt"})
        weight_map.update({n: fname for n in chunk})
    if index:
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map}))
    return folder


def _exact(a: dict, b: dict) -> None:
    assert list(a) == list(b) or set(a) == set(b)
    for k in b:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k].reshape(-1).view(torch.uint8), b[k].contiguous().reshape(-1).view(torch.uint8)), k


def test_a_streamed_commit_stores_what_a_state_dict_commit_stores(repo, tmp_path):
    sd = _state(0)
    save_file(sd, tmp_path / "w.safetensors", metadata={"format": "pt"})
    streamed = repo.commit(tmp_path / "w.safetensors", name="s", message="from a file")
    loaded = repo.commit(sd, name="d", message="from tensors", weights_meta={"format": "pt"})
    assert (streamed.n_params, streamed.n_tensors, streamed.logical_bytes) == \
           (loaded.n_params, loaded.n_tensors, loaded.logical_bytes)
    with repo.catalog.read() as con:
        assert dict(tensorstore.snapshot_entries(con, streamed.id, 0)) == dict(tensorstore.snapshot_entries(con, loaded.id, 0))
    ck = repo.checkout("s", rebuild_module=False)
    _exact(ck.state_dict, sd)
    assert ck.weights_meta == {"format": "pt"}


def test_write_checkout_writes_the_bytes_safetensors_writes(repo, tmp_path):
    sd = _state(1)
    path = tmp_path / "w.safetensors"
    save_file(sd, path, metadata={"format": "pt"})
    v = repo.commit(path, name="m", message="one")
    repo.hot.path(v.id).unlink()   # cold: decoded from the archive
    out = repo.write_checkout("m", tmp_path / "cold.safetensors")
    assert Path(out.output).read_bytes() == path.read_bytes() and not out.sharded
    assert repo.hot.path(v.id).exists()   # a cold checkout of the latest version warms its hot copy
    repo.write_checkout("m", tmp_path / "hot.safetensors")
    assert (tmp_path / "hot.safetensors").read_bytes() == path.read_bytes()
    d = repo.commit(sd, name="d", message="tensors", weights_meta={"format": "pt"})
    repo.hot.path(d.id).unlink()
    repo.write_checkout("d", tmp_path / "d.safetensors")
    assert (tmp_path / "d.safetensors").read_bytes() == safetensors_bytes(sd, {"format": "pt"})
    with pytest.raises(InputError, match="exists; pass --force"):
        repo.write_checkout("m", tmp_path / "cold.safetensors")


def _writer(path: Path, sizes: list[int]) -> weightfiles.SafetensorsWriter:
    return weightfiles.SafetensorsWriter(path, [weightfiles.OutTensor(f"t{i}", "uint8", (n,), n) for i, n in enumerate(sizes)], None)


def test_a_checkout_flushes_what_it_wrote_in_the_background_and_fsyncs_at_the_end(tmp_path, monkeypatch):
    flushed, synced = [], []
    monkeypatch.setattr(weightfiles, "EARLY_SYNC_BYTES", 1000)
    monkeypatch.setattr(weightfiles.os, "fdatasync", lambda fd: flushed.append(fd))
    real_fsync = os.fsync
    monkeypatch.setattr(weightfiles.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    w = _writer(tmp_path / "w.safetensors", [600, 600, 600, 50])
    for i, n in enumerate([600, 600, 600, 50]):
        w.write(f"t{i}", bytes([i]) * n)
    w.finish()
    w.publish()
    assert len(flushed) == 1 and len(synced) == 1          # flushed once while writing (1200 bytes), fsynced at the end
    data = (tmp_path / "w.safetensors").read_bytes()
    assert data.endswith(bytes([0]) * 600 + bytes([1]) * 600 + bytes([2]) * 600 + bytes([3]) * 50)


def test_a_failed_background_flush_fails_the_checkout_and_leaves_no_file(tmp_path, monkeypatch):
    """The kernel reports a writeback error to one flush only: the writer raises it itself."""
    def eio(fd):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(weightfiles, "EARLY_SYNC_BYTES", 100)
    monkeypatch.setattr(weightfiles.os, "fdatasync", eio)
    w = _writer(tmp_path / "w.safetensors", [300, 300])
    with pytest.raises(OSError, match="Input/output error"):   # at the next write, or at the latest at finish
        w.write("t0", bytes(300))
        w.write("t1", bytes(300))
        w.finish()
    w.abort()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("via", ["index", "folder", "folder-without-index"])
def test_a_sharded_checkpoint_commits_and_checks_out_as_the_same_shards(repo, tmp_path, via):
    sd = _state(2)
    src = _sharded(tmp_path / "ckpt", sd, index=via != "folder-without-index")
    v = repo.commit(src / "model.safetensors.index.json" if via == "index" else src, name="llm", message="sharded")
    assert v.n_tensors == len(sd)
    _exact(repo.checkout("llm", rebuild_module=False).state_dict, sd)
    done = repo.write_checkout("llm", tmp_path / "out")
    assert done.sharded and len(done.weight_files) == 4
    for f in sorted(src.glob("*.safetensors")):
        assert (tmp_path / "out" / f.name).read_bytes() == f.read_bytes()
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in sd.values())
    assert set(index["weight_map"]) == set(sd)
    # a single file when one is named
    repo.write_checkout("llm", tmp_path / "one.safetensors")
    one = load_file(tmp_path / "one.safetensors")
    _exact(one, sd)
    assert "dlv.shards" not in json.loads((tmp_path / "one.safetensors").read_bytes()[8:][
        :int.from_bytes((tmp_path / "one.safetensors").read_bytes()[:8], "little")])["__metadata__"]


def test_a_sharded_checkout_writes_its_shards_in_step(repo, tmp_path, monkeypatch):
    """Threads writing one file through the page cache take turns at its lock: the tensors are
    handed out so that consecutive ones go to different shards."""
    sd = _state(2)
    repo.commit(_sharded(tmp_path / "ckpt", sd), name="llm", message="sharded")
    written = []
    real = weightfiles.SafetensorsWriter._write_at

    def record(self, view, pos, *, placed):
        written.append(self.path.name)
        return real(self, view, pos, placed=placed)
    monkeypatch.setattr(weightfiles.SafetensorsWriter, "_write_at", record)
    checkout_files.write_checkout(repo, "llm", tmp_path / "out", workers=1)   # one thread: in job order
    shards = sorted(p.name for p in (tmp_path / "out").glob("*.safetensors"))
    assert len(written) == len(sd) and len(shards) == 3
    assert written[:3] == shards, written
    for f in sorted((tmp_path / "ckpt").glob("*.safetensors")):
        assert (tmp_path / "out" / f.name).read_bytes() == f.read_bytes()


def test_a_failed_checkout_takes_back_the_folders_it_made_and_only_those(repo, tmp_path, monkeypatch):
    monkeypatch.setenv("DLV_HOT_COPIES", "0")   # decoded from the damaged blob, not copied from a hot copy
    sd = _state(4)
    repo.commit(_sharded(tmp_path / "ckpt", sd), name="llm", message="sharded")
    blob = max(repo.store, key=repo.store.size)
    path = repo.store.path_of(blob)
    path.write_bytes(path.read_bytes()[:-1] + b"?")
    with pytest.raises(IntegrityError, match=f"object {blob[:16]} is corrupt"):
        repo.write_checkout("llm", tmp_path / "new" / "deeper" / "out")
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    with pytest.raises(IntegrityError, match=f"object {blob[:16]} is corrupt"):
        repo.write_checkout("llm", tmp_path / "kept" / "out")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["notes.txt"]


def test_any_version_shards_on_request(repo, tmp_path):
    sd = _state(3)
    repo.commit(sd, name="m", message="one")
    size = max(t.numel() * t.element_size() for t in sd.values())
    done = repo.write_checkout("m", tmp_path / "shards", max_shard_bytes=size)
    names = sorted(p.name for p in (tmp_path / "shards").iterdir())
    assert done.sharded and names[-1] == "model.safetensors.index.json" and len(names) > 3
    assert names[0] == f"model-00001-of-{len(names) - 1:05d}.safetensors"
    back = repo.commit(tmp_path / "shards", name="again", message="from shards")
    _exact(repo.checkout(back.id, rebuild_module=False).state_dict, sd)
    with pytest.raises(InputError, match="a sharded checkout writes a folder"):
        repo.write_checkout("m", tmp_path / "x.safetensors", max_shard_bytes=size)


def test_broken_sharded_checkpoints_are_refused_with_the_reason(repo, tmp_path):
    src = _sharded(tmp_path / "ckpt", _state(4))
    (src / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(WeightsError, match="names shard 'model-00002-of-00003.safetensors', which is not in"):
        repo.commit(src, name="m", message="x")
    (src / "model.safetensors.index.json").write_text("{}")
    with pytest.raises(WeightsError, match="is not a safetensors index"):
        repo.commit(src / "model.safetensors.index.json", name="m", message="x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="empty is a folder with no .safetensors file and no model.safetensors.index.json"):
        repo.commit(tmp_path / "empty", name="m", message="x")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(WeightsError, match="is not a valid safetensors file"):
        repo.commit(tmp_path / "bad.safetensors", name="m", message="x")
    assert repo.log() == []


def test_cli_commits_a_path_and_checks_out_shards(cli, tmp_path):
    sd = _state(5)
    _sharded(cli.work / "ckpt", sd)
    assert cli("init")[0] == 0
    code, out, err = cli("commit", "ckpt", "--name", "llm", "-m", "sharded")
    assert code == 0, err
    code, out, err = cli("checkout", "llm")
    assert code == 0 and "2 shards" not in out and "3 shards and model.safetensors.index.json" in out, out + err
    assert (cli.work / "llm@1" / "model-00003-of-00003.safetensors").is_file()
    code, out, _ = cli("checkout", "llm", "-o", "w.safetensors", "--json")
    assert code == 0 and json.loads(out)["shards"] == []
    code, _, err = cli("commit", "ckpt", "--weights", "x.safetensors", "--name", "llm", "-m", "twice")
    assert code == 2 and "give the weights once" in err


def test_cli_checkout_to_an_unusable_path_is_a_one_line_error(cli, tmp_path):
    _sharded(cli.work / "ckpt", _state(5))
    assert cli("init")[0] == 0 and cli("commit", "ckpt", "--name", "llm", "-m", "sharded")[0] == 0
    (cli.work / "afile").write_text("x")
    code, _, err = cli("checkout", "llm", "-o", "afile/out")   # a file in the way of a folder
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "afile/out: not a directory; check the path (and its permissions)" in err
    code, _, err = cli("checkout", "llm", "-o", "afile")
    assert code == 2 and "afile is a file; a sharded checkout writes a folder of shards" in err, err
    assert (cli.work / "afile").read_text() == "x"


_MEASURE_MEMORY = """
import json, sys, tracemalloc
import modelhub
from modelhub.repo import checkout_files, tensorstore
repo_dir, path, out, budget = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
tensorstore.STREAM_BYTES = budget
warm = modelhub.init_repo(repo_dir + "-warm-up")    # first-use imports and caches are not the commit's
warm.commit(path, name="big", message="warm-up")
warm.write_checkout("big", out.replace(".safetensors", "-warm-up.safetensors"))
repo = modelhub.init_repo(repo_dir)
tracemalloc.start()
v = repo.commit(path, name="big", message="many tensors")
_, commit_peak = tracemalloc.get_traced_memory()
tracemalloc.reset_peak()
repo.write_checkout("big", out)
_, checkout_peak = tracemalloc.get_traced_memory()
print(json.dumps({"n_tensors": v.n_tensors, "commit": commit_peak, "checkout": checkout_peak}))
"""


def test_streaming_memory_stays_near_a_few_tensors(tmp_path, monkeypatch):
    """tracemalloc sees every Python and numpy buffer (mapped file pages are not allocations):
    a commit and a checkout of a 24 MB model of many tensors stay far below the model's size.
    Measured in a fresh process: tracemalloc counts every thread's allocations, and in a test
    session a thread an earlier test left behind once pushed the peak over the bound."""
    import subprocess
    import sys
    g = torch.Generator().manual_seed(6)
    sd = {f"t{i:03d}": torch.randn(64, 1024, generator=g) for i in range(96)}   # 96 x 256 KiB
    path = tmp_path / "big.safetensors"
    save_file(sd, path)
    model = path.stat().st_size
    largest = 64 * 1024 * 4
    monkeypatch.setenv("DLV_HOT_COPIES", "0")
    out = tmp_path / "out.safetensors"
    run = subprocess.run([sys.executable, "-c", _MEASURE_MEMORY, str(tmp_path / "repo"), str(path), str(out),
                          str(4 * largest)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    peaks = json.loads(run.stdout.strip().splitlines()[-1])
    assert peaks["n_tensors"] == 96
    assert out.read_bytes() == path.read_bytes()
    bound = 3 * (4 * largest) + (2 << 20)   # the codecs' temporaries over the 4 tensors in flight
    assert peaks["commit"] < bound < model / 4, (peaks, bound, model)   # measured: ~2.3 MB of 25 MB
    assert peaks["checkout"] < bound, (peaks, bound)                   # measured: ~1.8 MB


def test_mangled_files_are_refused_or_read_within_bounds(tmp_path):
    """Cut or flipped bytes: open_weights raises WeightsError naming the file, or every tensor it
    hands out lies inside the file with the size its dtype and shape need."""
    import random

    from modelhub.weightfiles import open_weights

    good = tmp_path / "good.safetensors"
    save_file(_state(7, n=2), good, metadata={"format": "pt"})
    data = good.read_bytes()
    rnd = random.Random(0)
    for trial in range(60):
        mangled = bytearray(data)
        if trial % 2:
            del mangled[rnd.randrange(len(mangled)):]
        else:
            for _ in range(3):
                mangled[rnd.randrange(min(len(mangled), 400))] ^= 1 << rnd.randrange(8)
        path = tmp_path / f"m{trial}.safetensors"
        path.write_bytes(bytes(mangled))
        try:
            with open_weights(path) as src:
                for spec in src.specs:
                    assert 8 <= spec.start <= spec.end <= len(mangled)
                    assert len(src.view(spec)) == spec.nbytes
        except WeightsError as exc:
            assert str(path) in str(exc)


@pytest.mark.parametrize("via", ["file", "state_dict"])
def test_small_tensors_are_committed_as_one_frame_and_the_rest_in_segments(repo, tmp_path, via):
    """A vector below SMALL_TENSOR_BYTES is one zstd frame (one blob to write); a larger vector, and a
    matrix of any size, the segmented codec's fields (what progressive reads narrow down); all check
    out exactly."""
    from modelhub.catalog import tensors as catalog_tensors
    from modelhub.storage.tensors import SMALL_TENSOR_BYTES

    g = torch.Generator().manual_seed(3)
    sd = {"small": torch.randn(SMALL_TENSOR_BYTES // 4 - 1, generator=g),
          "edge": torch.randn(SMALL_TENSOR_BYTES // 4, generator=g),
          "wide": torch.randn(64, 64, generator=g), "matrix": torch.randn(4, 4, generator=g),
          "scalar": torch.tensor(3.0)}
    if via == "file":
        save_file(sd, tmp_path / "w.safetensors")
        version = repo.commit(tmp_path / "w.safetensors", name="m", message="m")
    else:
        version = repo.commit(sd, name="m", message="m")
    with repo.catalog.read() as con:
        encodings = catalog_tensors.encodings(con)
        entries = dict(tensorstore.snapshot_entries(con, version.id, 0))
    codec = {k: json.loads(encodings[entries[k]])["codec"] for k in sd}
    assert codec == {"small": "zstd-whole", "edge": "segmented", "wide": "segmented", "matrix": "segmented",
                     "scalar": "zstd-whole"}
    _exact(repo.checkout("m", rebuild_module=False).state_dict, sd)


def test_a_streamed_commit_stores_each_new_tensor_once_and_reuses_stored_ones(repo, tmp_path, monkeypatch):
    """A tensor already stored (by any model) is not encoded again, and one the model holds twice
    is encoded once."""
    sd = _state(3)
    save_file(sd, tmp_path / "a.safetensors")
    repo.commit(tmp_path / "a.safetensors", name="a", message="first")
    later = dict(sd)
    later["layers.0.weight"] = sd["layers.0.weight"] + 1            # new
    later["copy"] = later["layers.0.weight"].clone()                  # new, and twice in this model
    save_file(later, tmp_path / "b.safetensors")
    encoded = []
    real = tensorstore.encode_tensor
    monkeypatch.setattr(tensorstore, "encode_tensor", lambda raw, *a, **k: encoded.append(len(raw)) or real(raw, *a, **k))
    with repo.catalog.read() as con:
        before = con.execute("SELECT count(*) FROM tensor_data").fetchone()[0]
    repo.commit(tmp_path / "b.safetensors", name="b", message="second")
    with repo.catalog.read() as con:
        after = con.execute("SELECT count(*) FROM tensor_data").fetchone()[0]
    assert encoded == [later["copy"].numel() * 4] and after == before + 1
    _exact(repo.checkout("b", rebuild_module=False).state_dict, later)


def test_a_streamed_commit_encodes_new_tensors_while_later_ones_are_still_being_hashed(repo, tmp_path, monkeypatch):
    """The disk writes of the first tensors overlap the hashing of the last: the last tensor's hash
    waits here until some tensor has been encoded, which a commit that hashed everything first
    could never do (it would time out and fail). Small tensors go to the threads in batches
    (``BATCH_BYTES``); here two at a time, so that the 31 tensors are not all hashed as one."""
    from modelhub.storage import tensors as storage_tensors

    g = torch.Generator().manual_seed(11)
    sd = {f"w{i:02d}": torch.randn(32, 32, generator=g) for i in range(30)}
    sd["z.last"] = torch.randn(33, 32, generator=g)   # last in the file (safetensors orders by name); its own size
    save_file(sd, tmp_path / "m.safetensors")
    monkeypatch.setattr(tensorstore, "_LOOKUP_TENSORS", 4)
    monkeypatch.setattr(tensorstore, "BATCH_BYTES", 2 * 32 * 32 * 4)
    encoded = __import__("threading").Event()
    waited = []
    real_hash, real_encode = storage_tensors.tensor_hash, tensorstore.encode_tensor

    def hash_(raw, dtype, shape, **kw):
        if list(shape) == [33, 32]:
            waited.append(encoded.wait(timeout=30))
        return real_hash(raw, dtype, shape, **kw)

    def encode(*a, **kw):
        encoded.set()
        return real_encode(*a, **kw)
    monkeypatch.setattr(storage_tensors, "tensor_hash", hash_)
    monkeypatch.setattr(tensorstore, "encode_tensor", encode)
    repo.commit(tmp_path / "m.safetensors", name="m", message="c")
    assert waited == [True]
    _exact(repo.checkout("m", rebuild_module=False).state_dict, sd)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_checked_out_files_and_stored_objects_take_the_umask_like_any_new_file(repo, tmp_path, umask, mode):
    """Not mkstemp's 0600: a checkout's weights are files others may be meant to read (a shared
    model folder, a serving container's user), and so are a shared repository's objects."""
    sd = _state(5)
    src = _sharded(tmp_path / "src", sd)
    old = os.umask(umask)
    try:
        repo.commit(src, name="m", message="c")
        repo.write_checkout("m", tmp_path / "out")
    finally:
        os.umask(old)
    written = [p for p in (tmp_path / "out").iterdir()]
    objects = [p for p in (repo.root / ".dlv" / "objects").rglob("*") if p.is_file()]
    assert written and objects
    assert {oct(p.stat().st_mode & 0o777) for p in written + objects} == {oct(mode)}


def test_a_new_tensor_stays_mapped_from_its_hashing_to_its_encoding_and_every_tensor_is_let_go(repo):
    """A streaming commit reads a new tensor twice (hash, then encode): its pages are dropped once,
    after the encode (dropping them between the two reads faulted every page in twice); a tensor
    the catalog holds already, or one equal to an earlier tensor, is dropped after its hash."""
    g = torch.Generator().manual_seed(11)
    arrays = [torch.randn(40, 40, generator=g) for _ in range(5)]
    arrays.append(arrays[1].clone())            # equal to an earlier tensor: stored once
    events: list[tuple[str, int]] = []

    def streamed(ts):
        return [tensorstore.StreamedTensor("float32", tuple(t.shape), t.numel() * 4,
                                           lambda i=i, t=t: events.append(("read", i)) or t.numpy().tobytes(),
                                           lambda i=i: events.append(("done", i)))
                for i, t in enumerate(ts)]

    def per_tensor() -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for what, i in events:
            out.setdefault(i, []).append(what)
        return out

    with repo.catalog.write() as con:
        tensorstore.store_streamed(con, repo.store, streamed(arrays), workers=2)
    first = per_tensor()
    assert all(first[i] == ["read", "read", "done"] for i in range(5)), first
    assert first[5] == ["read", "done"], first          # the duplicate is hashed, never encoded

    events.clear()
    with repo.catalog.write() as con:                    # all stored now
        tensorstore.store_streamed(con, repo.store, streamed(arrays), workers=2)
    assert per_tensor() == {i: ["read", "done"] for i in range(6)}
