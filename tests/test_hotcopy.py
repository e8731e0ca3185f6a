"""Hot copies: the latest version of each model kept uncompressed and verified on every read."""
from __future__ import annotations

import shutil
from collections import OrderedDict

import pytest
import torch
from safetensors.torch import load_file

import modelhub.repo.reads as reads
import modelhub.repo.tensorstore as tensorstore
from helpers import assert_bit_exact, tiny_cnn
from modelhub.errors import InputError
from modelhub.repo.hotcopy import HotCopies


def _state(seed: int) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict((k, v.clone()) for k, v in tiny_cnn(seed).state_dict().items())


def _mixed_state() -> "OrderedDict[str, torch.Tensor]":
    g = torch.Generator().manual_seed(3)
    return OrderedDict([
        ("w", torch.randn(7, 5, generator=g)),
        ("half", torch.randn(9, generator=g).to(torch.bfloat16)),
        ("empty", torch.zeros(0, 4)),
        ("mask", torch.tensor([True, False, True])),
        ("steps", torch.tensor(41, dtype=torch.int64)),
        ("special", torch.tensor([float("nan"), float("inf"), -0.0, 1e-45])),
    ])


def _no_archive_reads(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("the archive was read although a valid hot copy exists")
    monkeypatch.setattr(tensorstore, "load_tensors", refuse)  # what reads.load_state_dict decodes with


def test_commit_writes_a_hot_copy_that_checkout_serves_bit_exact(repo, monkeypatch):
    state = _mixed_state()
    info = repo.commit(state, name="m", message="one")
    assert repo.hot.version_ids() == {info.id}
    _no_archive_reads(monkeypatch)
    assert_bit_exact(repo.checkout("m", rebuild_module=False).state_dict, state)


def test_hot_copy_is_a_plain_safetensors_file(repo):
    state = _mixed_state()
    info = repo.commit(state, name="m", message="one")
    assert_bit_exact(load_file(str(repo.hot.path(info.id))), state)


def test_a_newer_version_replaces_the_hot_copy_and_older_ones_decode_from_the_archive(repo):
    first = repo.commit(_state(0), name="m", message="one")
    second = repo.commit(_state(1), name="m", message="two")
    other = repo.commit(_state(2), name="n", message="other model")
    assert repo.hot.version_ids() == {second.id, other.id}
    assert_bit_exact(repo.checkout(first.id, rebuild_module=False).state_dict, _state(0))
    assert repo.hot.version_ids() == {second.id, other.id}  # no hot copy for a non-latest version


def test_earlier_snapshots_never_come_from_the_hot_copy(repo):
    repo.commit(_state(1), name="m", message="one", snapshots=[_state(0)])
    assert_bit_exact(repo.checkout("m", snapshot=0, rebuild_module=False).state_dict, _state(0))
    assert_bit_exact(repo.checkout("m", rebuild_module=False).state_dict, _state(1))


@pytest.mark.parametrize("damage", ["flip_data_bit", "truncate", "flip_header_byte"])
def test_a_damaged_hot_copy_is_detected_replaced_and_never_served(repo, damage):
    state = _state(0)
    info = repo.commit(state, name="m", message="one")
    path = repo.hot.path(info.id)
    data = bytearray(path.read_bytes())
    if damage == "flip_data_bit":
        data[-5] ^= 0x01
    elif damage == "truncate":
        del data[len(data) // 2:]
    else:
        data[40] ^= 0x20
    path.write_bytes(bytes(data))
    problems = [p for p in repo.fsck().problems if p.kind == "bad_hot_copy"]
    assert [p.severity for p in problems] == ["warning"] and problems[0].versions == ("m@1",)
    assert_bit_exact(repo.checkout("m", rebuild_module=False).state_dict, state)
    # the checkout fell back to the archive and rewrote the copy for next time
    assert repo.hot.read(info.id, _entries(repo, info.id)) is not None
    assert not [p for p in repo.fsck().problems if p.kind == "bad_hot_copy"]


def test_a_hot_copy_under_another_versions_name_is_refused(repo):
    a = repo.commit(_state(0), name="a", message="a")
    b = repo.commit(_state(1), name="b", message="b")
    shutil.copyfile(repo.hot.path(a.id), repo.hot.path(b.id))
    assert repo.hot.read(b.id, _entries(repo, b.id)) is None
    assert not repo.hot.path(b.id).exists()  # unusable copies are deleted
    assert_bit_exact(repo.checkout("b", rebuild_module=False).state_dict, _state(1))


def test_changing_checked_out_tensors_in_place_leaves_the_hot_copy_intact(repo, monkeypatch):
    state = _state(0)
    repo.commit(state, name="m", message="one")
    out = repo.checkout("m", rebuild_module=False).state_dict
    for t in out.values():
        t.add_(1)
    _no_archive_reads(monkeypatch)
    assert_bit_exact(repo.checkout("m", rebuild_module=False).state_dict, state)


def test_hot_copies_can_be_turned_off(repo, monkeypatch):
    monkeypatch.setenv("DLV_HOT_COPIES", "0")
    repo.commit(_state(0), name="m", message="one")
    assert_bit_exact(repo.checkout("m", rebuild_module=False).state_dict, _state(0))
    assert repo.hot.version_ids() == set()
    assert repo.stats().hot_bytes == 0


def test_a_failing_hot_copy_write_does_not_fail_the_commit(repo, monkeypatch):
    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(HotCopies, "write", disk_full)
    repo.commit(_state(0), name="m", message="one")
    assert repo.hot.version_ids() == set()
    assert_bit_exact(repo.checkout("m", rebuild_module=False).state_dict, _state(0))


def test_gc_and_fsck_remove_stale_hot_copies_and_stats_counts_the_cache(repo):
    first = repo.commit(_state(0), name="m", message="one")
    repo.commit(_state(1), name="m", message="two")
    stale = repo.hot.path(first.id)
    repo.hot.write(first.id, _entries(repo, first.id), _state(0))
    assert [p.kind for p in repo.fsck().problems] == ["stale_hot_copy"]
    assert repo.stats().hot_bytes == sum(p.stat().st_size for p in repo.hot.files())
    report = repo.gc(dry_run=True)
    assert (report.removed_hot_files, report.removed_hot_bytes) == (1, stale.stat().st_size)
    assert stale.exists()
    assert repo.gc().removed_hot_files == 1
    assert not stale.exists() and len(repo.hot.files()) == 1


def test_read_through_writes_the_hot_copy_of_a_latest_version(repo):
    info = repo.commit(_state(0), name="m", message="one")
    repo.hot.path(info.id).unlink()
    assert_bit_exact(repo.checkout("m", rebuild_module=False).state_dict, _state(0))
    assert repo.hot.version_ids() == {info.id}


def _entries(repo, vid: str) -> list[tuple[str, str]]:
    with repo.catalog.read() as con:
        return reads.snapshot_entries(con, vid)


def test_a_size_cap_evicts_the_least_recently_used_hot_copies(repo, monkeypatch):
    a = repo.commit(_state(0), name="a", message="a")
    size = repo.hot.path(a.id).stat().st_size
    b = repo.commit(_state(1), name="b", message="b")
    repo.checkout("a", rebuild_module=False)  # a is now the more recently used
    old = repo.hot.path(b.id).stat().st_mtime - 100
    import os
    os.utime(repo.hot.path(b.id), (old, old))
    monkeypatch.setenv("DLV_HOT_MAX_BYTES", str(2 * size + size // 2))
    c = repo.commit(_state(2), name="c", message="c")
    assert repo.hot.version_ids() == {a.id, c.id}


def test_a_malformed_size_cap_is_refused_before_committing(repo, monkeypatch):
    monkeypatch.setenv("DLV_HOT_MAX_BYTES", "lots")
    with pytest.raises(InputError, match=r"DLV_HOT_MAX_BYTES='lots' is not a size"):
        repo.commit(_state(0), name="m", message="one")
    assert repo.log() == []


class _Tied(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = torch.nn.Linear(4, 4, bias=False)
        self.dec = torch.nn.Linear(4, 4, bias=False)
        self.dec.weight = self.enc.weight


def test_a_module_takes_the_checked_out_tensors_and_training_it_leaves_the_copy_intact(repo, monkeypatch):
    from helpers import TinyCNN
    state = _state(0)
    repo.commit(state, name="m", message="one")
    module = repo.checkout("m", model_class=TinyCNN).module
    assert all(isinstance(p, torch.nn.Parameter) and p.requires_grad for p in module.parameters())
    opt = torch.optim.SGD(module.parameters(), lr=0.5)
    module(torch.randn(2, 1, 8, 8)).sum().backward()
    opt.step()
    assert not torch.equal(module.state_dict()["conv1.weight"], state["conv1.weight"])
    _no_archive_reads(monkeypatch)
    assert_bit_exact(repo.checkout("m", rebuild_module=False).state_dict, state)


def test_tied_weights_stay_tied_and_other_dtypes_are_converted(repo):
    tied = _Tied()
    repo.commit(tied, name="tied", message="tied")
    out = repo.checkout("tied", model_class=_Tied).module
    assert out.dec.weight is out.enc.weight
    assert torch.equal(out.enc.weight.view(torch.int32), tied.enc.weight.view(torch.int32))
    wide = repo.checkout("tied", model_class=lambda: _Tied().double()).module
    assert wide.enc.weight.dtype == torch.float64 and wide.dec.weight is wide.enc.weight
