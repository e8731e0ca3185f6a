"""Progressive evaluation of many versions (issue 20): labels equal full precision for every version and
record, the union of fetched bytes is what the store served (shared blobs once), a remote's segments are
fetched one ranged object read each and counted, the cost warning, and the CLI over a DQL selection."""
from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from torch import nn

import modelhub
from helpers import tiny_cnn
from modelhub.progressive.fetch import BandwidthModel, FetchLedger
from modelhub.progressive.selection import Placement, cost_warning, evaluate_selection
from modelhub.remote import add_remote, open_remote, publish
from modelhub.remote.transport import RemoteStore
from modelhub.repo.engine_access import engine_access
from test_remote_roundtrip import hub, moto_endpoint  # noqa: F401 - fixtures: folder and S3 (moto) remotes

torch.set_num_threads(1)


def add_data(repo, tmp_path, n=40, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32) + y[:, None, None, None]
    np.savez(tmp_path / "recs.npz", x=x, y=y)
    return repo.data_add("recs", [tmp_path / "recs.npz"])


def lineage(repo, n: int = 3, seed: int = 0, name: str = "net"):
    """``n`` versions of one network; each fine-tune changes only the head (fc2)."""
    model = tiny_cnn(seed, n_classes=3).eval()
    refs = []
    for i in range(n):
        if i:
            with torch.no_grad():
                model.fc2.weight.add_(0.02 * i)
        refs.append(repo.commit(model, name=name, message=f"v{i}").ref)
    return refs


def full_labels(repo, ref, x, k=1):
    with torch.no_grad():
        return [set(r) for r in torch.topk(repo.checkout(ref).module.eval()(x), k, dim=1).indices.tolist()]


def mlp(seed: int, widths: tuple[int, ...], act: type) -> nn.Module:
    torch.manual_seed(seed)
    layers, prev = OrderedDict(), 6
    for i, w in enumerate(widths):
        layers[f"fc{i}"] = nn.Linear(prev, w)
        layers[f"act{i}"] = act()
        prev = w
    layers["out"] = nn.Linear(prev, 4)
    return nn.Sequential(layers).eval()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), widths=st.lists(st.integers(2, 12), min_size=1, max_size=3),
       act=st.sampled_from([nn.ReLU, nn.Tanh, nn.ReLU6]), k=st.integers(1, 2), shift=st.floats(1e-4, 0.3))
def test_labels_equal_full_precision_for_every_version_and_record(tmp_path_factory, seed, widths, act, k, shift):
    repo = modelhub.init_repo(tmp_path_factory.mktemp("sel"))
    model = mlp(seed, tuple(widths), act)
    refs = [repo.commit(model, name="m", message="a").ref]
    with torch.no_grad():
        model.out.weight.add_(shift)
    refs.append(repo.commit(model, name="m", message="b").ref)
    x = torch.randn(24, 6, generator=torch.Generator().manual_seed(seed))
    report = evaluate_selection(engine_access(repo), refs, x, top_k=k)
    assert report.labels_equal is True
    for v in report.versions:
        assert [set(r) for r in v.report.labels.tolist()] == full_labels(repo, v.ref, x, k)
    # the union never exceeds what full precision fetched over the same store, nor the per-version sum
    assert report.progressive.bytes_fetched <= report.full.bytes_fetched == report.bytes_stored
    assert report.progressive.bytes_fetched <= sum(v.report.bytes_read for v in report.versions)


def test_shared_blobs_are_fetched_once_across_versions(repo):
    model = tiny_cnn(3, n_classes=3).eval()
    a = repo.commit(model, name="net", message="a").ref
    b = repo.commit(model, name="net", message="same weights").ref      # every tensor shared with a
    x = torch.randn(30, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    one = evaluate_selection(engine_access(repo), [a], x)
    both = evaluate_selection(engine_access(repo), [a, b], x)
    assert both.versions[0].report.bytes_read == both.versions[1].report.bytes_read == one.progressive.bytes_fetched
    assert both.progressive.bytes_fetched == one.progressive.bytes_fetched      # the union, not the sum
    assert both.progressive.requests == one.progressive.requests
    assert both.bytes_stored == one.bytes_stored == both.full.bytes_fetched
    assert both.labels_equal is True


def test_tensors_another_version_fetched_start_where_it_left_them(repo):
    refs = lineage(repo, 2)            # the second changes only the head (fc2)
    x = torch.randn(30, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    report = evaluate_selection(engine_access(repo), refs, x)
    first, second = (v.report for v in report.versions)
    # the first starts at 3 segments everywhere (its biases, committed as one frame, are read exactly);
    # the second starts its shared tensors at least where the first left them, and fetches nothing it
    # already holds
    assert first.levels[0].mean_segments <= 3.0 and len(first.levels) > 1
    assert second.levels[0].mean_segments > first.levels[0].mean_segments
    assert len(second.levels) <= len(first.levels)
    assert report.progressive.bytes_fetched <= first.bytes_read + second.bytes_read
    assert report.labels_equal is True


def test_a_prefix_held_whole_is_run_and_only_the_rest_bounded():
    # a sibling fine-tune read the body whole: its float32 features are the reference's own, so only the
    # head is bounded and read (from its start level, not exact), and the labels stay full precision's
    from modelhub.progressive import ManifestSource, evaluate_module, source_from_state_dict
    from modelhub.storage.tensors import manifest_blobs
    model = tiny_cnn(5, n_classes=3).eval()
    x = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    src = source_from_state_dict(model.state_dict())
    head = ("fc2.weight", "fc2.bias")
    body = {b for name, e in src.entries.items() if name not in head for b in manifest_blobs(e.manifest)}
    held = ManifestSource(src.entries, src.fetch, held=body.__contains__)
    report = evaluate_module(model, x, source=held, compare=True)
    assert report.head_from is not None and report.agreement == 1.0
    assert report.bytes_total == sum(held.total_bytes(t) for t in head)       # only the head is read
    assert report.levels[0].mean_segments == 3.0
    with torch.no_grad():
        assert report.labels[:, 0].tolist() == model(x).argmax(1).tolist()
    partly = ManifestSource(src.entries, src.fetch, held=lambda b: b in body and b not in
                            set(manifest_blobs(src.entries["conv1.weight"].manifest)))
    assert evaluate_module(model, x, source=partly).head_from is None     # the first layer is not held whole


def test_free_levels_are_the_leading_segments_at_hand():
    from modelhub.progressive.source import ManifestSource, source_from_state_dict
    entries = source_from_state_dict({"w": torch.randn(16, 16)}).entries
    segments = entries["w"].manifest["segments"]
    assert ManifestSource(entries, bytes.fromhex).free_levels("w") == 0          # nothing held: nothing free
    held = {segments[0], segments[1], segments[3]}
    assert ManifestSource(entries, bytes.fromhex, held=held.__contains__).free_levels("w") == 2   # a gap ends it


def test_union_bytes_are_the_distinct_blobs_the_store_served(repo, monkeypatch):
    refs = lineage(repo, 3)
    served: list[str] = []
    real_get = repo.store.get

    def get(blob_hash, **kw):
        served.append(blob_hash)
        return real_get(blob_hash, **kw)
    monkeypatch.setattr(repo.store, "get", get)
    x = torch.randn(30, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    report = evaluate_selection(engine_access(repo), refs, x, compare=False,
                                bandwidth=BandwidthModel(latency_s=0.01, bytes_per_s=1e6))
    assert len(served) == len(set(served)) == report.progressive.requests   # each blob once
    assert report.progressive.bytes_fetched == sum(repo.store.size(h) for h in set(served))
    assert report.progressive.bytes_fetched < report.bytes_stored
    assert report.full is None and report.labels_equal is None
    assert report.progressive.modelled_fetch_s == pytest.approx(
        0.01 * report.progressive.requests + report.progressive.bytes_fetched / 1e6)


def test_ledger_counts_distinct_blobs_and_models_the_link():
    blobs = {"a": b"12345", "b": b"xy"}
    calls: list[str] = []
    ledger = FetchLedger(lambda h: calls.append(h) or blobs[h], BandwidthModel(0.5, 10.0))
    for h in ("a", "b", "a", "a"):
        assert ledger.fetch(h) == blobs[h]
    assert calls == ["a", "b"] and ledger.bytes_fetched == 7 and ledger.requests == 2
    assert ledger.modelled_fetch_s == pytest.approx(2 * 0.5 + 0.7)
    with pytest.raises(ValueError, match="throughput > 0"):
        BandwidthModel(0.0, 0.0)


def test_remote_weights_fetch_only_needed_segments_and_count_them(tmp_path, hub, monkeypatch):  # noqa: F811
    from modelhub.remote.weights import remote_weights
    a = modelhub.init_repo(tmp_path / "a")
    refs = lineage(a, 3)
    add_remote(a, "hub", hub)
    publish(a, open_remote(a, "hub"))
    b = modelhub.init_repo(tmp_path / "b")                  # no version here: weights stay on the remote
    add_remote(b, "hub", hub)
    asked: list[tuple[str, int]] = []
    real = RemoteStore.get_blob

    def get_blob(self, blob_hash, size):
        asked.append((blob_hash, size))
        return real(self, blob_hash, size)
    monkeypatch.setattr(RemoteStore, "get_blob", get_blob)
    x = torch.randn(30, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with remote_weights(open_remote(b, "hub")) as weights:
        report = evaluate_selection(weights, refs, x, placement=Placement(remote=True))
        assert weights.requests == len(asked) == report.progressive.requests + report.full.requests
        assert weights.bytes_fetched == report.progressive.bytes_fetched + report.full.bytes_fetched
    progressive_asks = asked[:report.progressive.requests]
    assert len(set(progressive_asks)) == len(progressive_asks)
    assert sum(size for _, size in progressive_asks) == report.progressive.bytes_fetched < report.bytes_stored
    assert report.labels_equal is True and report.warning is None
    for v in report.versions:
        assert [set(r) for r in v.report.labels.tolist()] == full_labels(a, v.ref, x)
    assert b.log() == [] and list(b.store) == []            # nothing pulled


def test_break_even_throughput_follows_from_the_measured_costs():
    from modelhub.progressive.selection import SelectionReport, StorageCost
    link = BandwidthModel(latency_s=0.01, bytes_per_s=1e6)

    def report(prog, full, link=link):
        return SelectionReport(1, 1, (), 1000, 1000, prog, full, link=link)
    full = StorageCost(1_000_000, 10, 0.0, 0.1, 0.1)
    # 750 kB fewer, 1 s more compute and 5 fewer requests: pays below 750 kB / 0.95 s = 6.316 Mbit/s
    slower = StorageCost(250_000, 5, 0.0, 0.1, 1.1)
    assert report(slower, full).pays_below_mbps == pytest.approx(0.75e6 / 0.95 * 8 / 1e6)
    assert report(StorageCost(250_000, 5, 0.0, 0.1, 0.1), full).pays_below_mbps == float("inf")
    assert report(StorageCost(1_000_000, 10, 0.0, 0.1, 1.1), full).pays_below_mbps == 0.0
    assert report(slower, full, link=None).pays_below_mbps is None
    assert report(slower, None).pays_below_mbps is None


def test_cost_warning_says_when_progressive_cannot_pay():
    assert cost_warning(Placement(remote=True), 100, 100) is None
    assert cost_warning(Placement(), 50, 100) is None
    assert "barely compressed" in cost_warning(Placement(), 95, 100)
    assert "hot copy" in cost_warning(Placement(hot_copy=True), 10, 100)


def test_repo_and_cli_evaluate_a_dql_selection(repo, tmp_path, cli):
    add_data(repo, tmp_path)
    lineage(repo, 3)
    lineage(repo, 1, seed=5, name="other")
    report = repo.eval_selection('select m where m.name == "net"', data="recs", split="all")
    assert [v.ref for v in report.versions] == ["net@1", "net@2", "net@3"]
    assert report.labels_equal is True and report.n_records == 40
    assert "hot copy" in report.warning                     # local, hot: bytes are cheap here
    code, out, err = cli("eval", "--select", 'select m where m.name == "net"', "other", "--data", "recs",
                         "--split", "all", "--progressive", "--json", "--repo", str(repo.root))
    assert code == 0, err
    got = json.loads(out)
    assert sorted(v["version"] for v in got["versions"]) == ["net@1", "net@2", "net@3", "other"]
    assert got["labels_equal"] is True and got["progressive"]["bytes_fetched"] <= got["bytes_stored"]
    assert "warning:" in err
    code, out, err = cli("eval", "net@1", "net@2", "--data", "recs", "--progressive", "--bandwidth", "5",
                         "--repo", str(repo.root))
    assert code == 0 and "bytes fetched (union)" in out and "full precision" in out, err
    assert "progressive pays" in out or "progressive cannot pay" in out     # the break-even throughput
    code, out, err = cli("eval", "net@1", "net@2", "--data", "recs", "--repo", str(repo.root))
    assert code != 0 and "add --progressive" in err
    code, out, err = cli("eval", "--progressive", "--select", 'select m where m.name == "nothing"', "--data",
                         "recs", "--repo", str(repo.root))
    assert code != 0 and "matched no version" in err


def test_selection_without_an_id_column_is_refused(repo, tmp_path):
    from modelhub.errors import InputError
    add_data(repo, tmp_path)
    lineage(repo, 1)
    with pytest.raises(InputError, match="no id column"):
        repo.eval_selection("select m.name where m.name == \"net\"", data="recs")


def test_every_snapshot_of_a_run_is_evaluated(repo, tmp_path, cli):
    import copy
    model = tiny_cnn(8, n_classes=3).eval()
    states = []
    for i in range(3):                          # a run's checkpoints: only the head moves
        with torch.no_grad():
            model.fc2.weight.add_(0.05)
        states.append(copy.deepcopy(model.state_dict()))
    ref = repo.commit(model, name="run", message="trained", snapshots=states[:2]).ref
    x = torch.randn(30, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    weights = engine_access(repo)
    assert weights.snapshot_count(weights.resolve(ref)) == 3
    report = evaluate_selection(weights, [ref], x, snapshots=True)
    assert [v.snapshot for v in report.versions] == [0, 1, 2] and report.labels_equal is True
    for v, state in zip(report.versions, states):
        m = tiny_cnn(8, n_classes=3).eval()
        m.load_state_dict(state)
        with torch.no_grad():
            assert v.report.labels[:, 0].tolist() == m(x).argmax(1).tolist()
    # the body is shared by the three snapshots: fetched once
    assert report.progressive.bytes_fetched < sum(v.report.bytes_read for v in report.versions)
    add_data(repo, tmp_path)
    code, out, err = cli("eval", ref, "--snapshots", "--data", "recs", "--progressive", "--repo", str(repo.root))
    assert code == 0 and "run@1 snapshot 2" in out, err
