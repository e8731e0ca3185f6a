"""The archive inside a repository: plans over snapshots and lineage, crash safety, CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import assert_bit_exact, bits, tiny_cnn

from modelhub.errors import ArchiveError, InputError
from modelhub.repo.archive import archive
from modelhub.storage import kernels
from modelhub.storage.context_coding import CODING_RANS, blob_codings
from modelhub.tensorio import save_safetensors


def _train_steps(model, n: int, scale: float, seed: int, frozen: tuple[str, ...] = ()) -> list[dict]:
    """Deterministic pseudo-training: small updates per 'epoch', frozen layers untouched."""
    g = torch.Generator().manual_seed(seed)
    snaps = []
    for _ in range(n):
        with torch.no_grad():
            for name, p in model.named_parameters():
                if not name.startswith(frozen):
                    p.add_(torch.randn(p.shape, generator=g) * scale)
        snaps.append({k: v.clone() for k, v in model.state_dict().items()})
    return snaps


@pytest.fixture
def lineage(repo):
    """base (4 snapshots) -> fine-tune with conv layers frozen (3 snapshots)."""
    m = tiny_cnn(0)
    base_snaps = _train_steps(m, 4, 1e-3, 1)
    v1 = repo.commit(base_snaps[-1], name="cnn", message="base", snapshots=base_snaps[:-1])
    ft_snaps = _train_steps(m, 3, 1e-4, 2, frozen=("conv",))
    v2 = repo.commit(ft_snaps[-1], name="cnn", message="ft", snapshots=ft_snaps[:-1])
    return repo, {v1.id: base_snaps, v2.id: ft_snaps}


def assert_all_snapshots_exact(repo, expected):
    for vid, snaps in expected.items():
        for i, sd in enumerate(snaps):
            ck = repo.checkout(vid, snapshot=i, rebuild_module=False)
            assert_bit_exact(ck.state_dict, sd)


def encodings(repo) -> dict:
    with repo.catalog.read() as con:
        return dict(con.execute("SELECT tensor_hash, encoding FROM tensor_data").fetchall())


@pytest.mark.parametrize("alpha,scheme", [(1.0, "independent"), (1.5, "parallel"), (4.0, "independent")])
def test_archive_keeps_every_snapshot_bit_exact(lineage, alpha, scheme):
    repo, expected = lineage
    result = archive(repo, alpha=alpha, scheme=scheme)
    assert_all_snapshots_exact(repo, expected)
    for s in result.snapshots:
        assert s.recreation_cost <= alpha * s.spt_cost * (1 + 1e-9)
    n_deltas = sum(json.loads(e).get("delta") is not None for e in encodings(repo).values())
    if alpha == 1.0:
        assert n_deltas == 0 and result.algorithm in ("spt", "pas-mt", "pas-pt")
    else:
        assert n_deltas > 0 and result.stored_after < result.stored_before


def test_frozen_layers_are_stored_once(lineage):
    repo, expected = lineage
    with repo.catalog.read() as con:
        distinct = con.execute("SELECT count(DISTINCT tensor_hash) FROM snapshot_tensors WHERE name LIKE 'conv%'").fetchone()[0]
    # conv tensors: 4 base snapshots x 4 tensors; the 3 fine-tune snapshots reuse the last base ones
    assert distinct == 16


def test_stats_report_recreation_cost_and_archive_lowers_storage(lineage, cli):
    repo, _ = lineage
    before = repo.stats()
    assert all(v.recreation_cost and v.recreation_cost > 0 for v in before.versions)
    archive(repo, alpha=4.0)
    after = repo.stats()
    rc_before = {v.id: v.recreation_cost for v in before.versions}
    # deltas make recreation dearer and storage (referenced blobs) smaller
    assert any(v.recreation_cost > rc_before[v.id] for v in after.versions)


def test_interrupted_archive_changes_nothing(lineage):
    repo, expected = lineage
    before = encodings(repo)
    for step in ("encoded", "blobs-written", "verified", "catalog-updated"):
        def boom(s, step=step):
            if s == step:
                raise RuntimeError(f"injected crash at {step}")
        with pytest.raises(RuntimeError, match=f"injected crash at {step}"):
            archive(repo, alpha=4.0, fail_point=boom)
        assert encodings(repo) == before
        assert_all_snapshots_exact(repo, expected)
    archive(repo, alpha=4.0)
    assert encodings(repo) != before
    assert_all_snapshots_exact(repo, expected)


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    import modelhub
    from modelhub.repo.archive import archive
    step = sys.argv[2]
    def die(s):
        if s == step:
            os._exit(137)  # like kill -9: no cleanup, no rollback handlers
    archive(modelhub.open_repo(sys.argv[1]), alpha=4.0, fail_point=die)
""")


@pytest.mark.parametrize("step", ["blobs-written", "catalog-updated"])
def test_killed_archive_process_leaves_every_version_readable(lineage, step):
    repo, expected = lineage
    before = encodings(repo)
    root = str(repo.paths.root)
    del repo  # release our handle on the catalog before the child opens it
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, root, step], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 137, proc.stderr
    import modelhub

    reopened = modelhub.open_repo(root)
    assert encodings(reopened) == before
    assert_all_snapshots_exact(reopened, expected)


def test_archive_rejects_bad_arguments(lineage):
    repo, _ = lineage
    with pytest.raises(InputError, match="--alpha 0.5 is below 1"):
        archive(repo, alpha=0.5)
    with pytest.raises(InputError, match="unknown scheme 'serial'"):
        archive(repo, scheme="serial")
    with pytest.raises(InputError, match="no plan fits in 10 bytes"):
        archive(repo, budget=10)


def test_corrupt_blob_is_reported_on_checkout(lineage):
    repo, expected = lineage
    archive(repo, alpha=4.0)
    with repo.catalog.read() as con:
        enc = json.loads(con.execute("SELECT encoding FROM tensor_data LIMIT 1").fetchone()[0])
    victim = enc["segments"][0]
    path = repo.store.path_of(victim)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match=f"object {victim[:16]} is corrupt"):
        for v in expected:
            for i in range(len(expected[v])):
                repo.checkout(v, snapshot=i, rebuild_module=False)


def test_cli_archive_stats_and_safetensors_roundtrip(cli, tmp_path):
    assert cli("init")[0] == 0
    m = tiny_cnn(3)
    sds = _train_steps(m, 3, 1e-3, 5)
    for i, sd in enumerate(sds):
        save_safetensors(tmp_path / f"w{i}.safetensors", sd)
        code, out, err = cli("commit", "--name", "net", "-m", f"epoch {i}", "--weights", str(tmp_path / f"w{i}.safetensors"))
        assert code == 0, err
    code, out, err = cli("archive", "--alpha", "3", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["stored_after"] < result["stored_before"] and result["n_reencoded"] > 0
    code, out, err = cli("stats", "--json")
    assert code == 0 and all(v["recreation_cost"] > 0 for v in json.loads(out)["versions"])
    for i, sd in enumerate(sds):
        target = tmp_path / f"out{i}.safetensors"
        code, out, err = cli("checkout", f"net@{i + 1}", "-o", str(target))
        assert code == 0, err
        from safetensors.torch import load_file

        back = load_file(str(target))
        for k in sd:
            assert torch.equal(bits(back[k]), bits(sd[k]))
    code, out, err = cli("archive", "--dry-run", "--alpha", "3", "--json")
    assert code == 0, err
    plans = json.loads(out)["plans"]
    assert [p["alpha"] for p in plans] == [1.0, 1.25, 1.5, 2.0, 3.0, 4.0]
    assert plans[0]["plan_storage_bytes"] >= plans[-1]["plan_storage_bytes"]
    code, out, err = cli("archive", "--dry-run")
    assert code == 0 and "worst / all-whole" in out
    code, out, err = cli("archive", "--budget", "lots")
    assert code != 0 and "is not a size; write e.g. 500000" in err
    code, out, err = cli("archive", "--budget", "1M")
    assert code == 0, err


def test_keep_latest_whole_stores_last_snapshots_whole(lineage):
    repo, expected = lineage
    result = archive(repo, alpha=4.0, keep_latest_whole=True)
    with repo.catalog.read() as con:
        latest = con.execute(
            "SELECT s.tensor_hash FROM snapshot_tensors s JOIN (SELECT version_id, max(snap) AS snap FROM snapshots "
            "GROUP BY version_id) l USING (version_id, snap)").fetchall()
        encs = dict(con.execute("SELECT tensor_hash, encoding FROM tensor_data").fetchall())
    # (a small vector's whole encoding is one zstd frame, format 1: its manifest has no "delta" key)
    assert all(json.loads(encs[h]).get("delta") is None for (h,) in latest)
    assert any(json.loads(e).get("delta") is not None for e in encs.values())
    assert result.stored_after < result.stored_before
    assert_all_snapshots_exact(repo, expected)


@pytest.mark.parametrize("delay", [0.5, 1.5, 3.0])
def test_archive_killed_at_a_random_moment_leaves_every_version_readable(lineage, delay):
    """SIGKILL after a delay (wherever the child happens to be: importing, measuring,
    writing blobs or committing); whatever survives must be fully readable."""
    import signal
    import time

    repo, expected = lineage
    root = str(repo.paths.root)
    del repo
    script = "import sys, modelhub\nfrom modelhub.repo.archive import archive\n" \
             "archive(modelhub.open_repo(sys.argv[1]), alpha=4.0)\n"
    proc = subprocess.Popen([sys.executable, "-c", script, root], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    import modelhub

    assert_all_snapshots_exact(modelhub.open_repo(root), expected)


def test_archive_uses_the_context_coder_where_it_is_smaller_and_stays_bit_exact(repo):
    """Updates of one absolute size (as an optimizer step makes them) change small weights by more
    ULPs than large ones: the ULP delta's size follows the parent's exponent, which is what the
    context coder models. The archive must pick it for some deltas (format 4: with rANS streams where
    the kernels are built), and every snapshot, gc and fsck must be unaffected."""
    g = torch.Generator().manual_seed(7)
    weights = torch.randn(256, 256, generator=g) * 0.05
    snaps = []
    for _ in range(4):
        weights = weights + torch.randn(weights.shape, generator=g) * 1e-4
        snaps.append({"fc.weight": weights.clone(), "fc.bias": torch.zeros(256)})
    v = repo.commit(snaps[-1], name="mlp", message="trajectory", snapshots=snaps[:-1])
    archive(repo, alpha=4.0)
    codecs = [json.loads(m)["codec"] for m in encodings(repo).values()]
    assert "context" in codecs, codecs
    context = [json.loads(m) for m in encodings(repo).values() if json.loads(m)["codec"] == "context"]
    assert {m["format"] for m in context} == {4}
    codings = {c for m in context for c in blob_codings(repo.store.get(m["segments"][0]))}
    assert CODING_RANS in codings or kernels.LIB is None, codings
    assert_all_snapshots_exact(repo, {v.id: snaps})
    assert repo.gc(grace_s=0) is not None
    assert_all_snapshots_exact(repo, {v.id: snaps})
    assert [p for p in repo.fsck().problems if p.severity == "error"] == []


def test_archive_measures_each_candidate_delta_once(repo, monkeypatch):
    """Three versions of six same-shape tensors, each a fine-tune of the last: the archive sizes
    the 18 whole encodings and the 12 parent->child deltas once each (it once re-measured every
    delta for every tensor: 216 delta encodes, and 18x the edges in the storage graph)."""
    import modelhub.repo.archive as archive_module
    base = torch.Generator().manual_seed(3)
    weights = {f"layer{i}.weight": torch.randn(64, 64, generator=base) for i in range(6)}
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        weights = {k: v + 1e-3 * torch.randn(v.shape, generator=g) for k, v in weights.items()}
        repo.commit(weights, name="ft", message=f"step {seed}")
    import hashlib
    real, calls = archive_module.encode_delta_best, []
    monkeypatch.setattr(archive_module, "encode_delta_best", lambda raw, *a, **k: (
        calls.append((k["base_hash"], hashlib.sha256(raw).hexdigest())), real(raw, *a, **k))[1])
    result = archive(repo, alpha=1.5)
    # each (base, tensor) delta encoded once: the 12 candidates, plus any edge the plan takes
    # the other way round (re-encoded when written)
    assert len(calls) == len(set(calls)) >= 12
    assert result.n_edges <= 18 + 12
    assert_bit_exact(repo.checkout("ft").state_dict, weights)


def _fine_tune_trajectory(repo, n_tensors: int = 6, versions: int = 3, side: int = 64) -> dict:
    """``versions`` commits of ``n_tensors`` same-shape float32 weights, each a fine-tune of the last."""
    base = torch.Generator().manual_seed(3)
    weights = {f"layer{i}.weight": torch.randn(side, side, generator=base) for i in range(n_tensors)}
    out = {}
    for seed in range(versions):
        g = torch.Generator().manual_seed(seed)
        weights = {k: v + 1e-3 * torch.randn(v.shape, generator=g) for k, v in weights.items()}
        out[repo.commit(weights, name="ft", message=f"step {seed}").id] = [weights]
    return out


def test_an_archive_within_small_memory_budgets_stores_what_an_unbounded_one_does(repo, tmp_path, monkeypatch):
    """With room for two decoded tensors and no kept encodings, the archive decodes again what it
    dropped and encodes again what it writes: the same plan, the same manifests, every version exact."""
    import modelhub
    import modelhub.repo.archive as archive_module

    _fine_tune_trajectory(repo)
    other = modelhub.init_repo(tmp_path / "bounded")
    expected = _fine_tune_trajectory(other)
    unbounded = archive(repo, alpha=1.5)
    monkeypatch.setattr(archive_module, "RAW_CACHE_BYTES", 1)
    monkeypatch.setattr(archive_module, "KEEP_ENCODED_BYTES", 0)
    bounded = archive(other, alpha=1.5)
    assert (bounded.n_reencoded, bounded.stored_after) == (unbounded.n_reencoded, unbounded.stored_after) > (0, 0)
    assert encodings(other) == encodings(repo)
    assert_all_snapshots_exact(other, expected)


def test_an_archive_holds_a_bounded_share_of_the_model_in_memory(repo, monkeypatch):
    """Three versions of 4 MB of weights (12 MB decoded): with budgets of 1 MB of decoded tensors
    and 0.5 MB of kept encodings, the archive's Python allocations peak at half the model or less
    (budgets + a delta's encoding temporaries, ~6-10x a tensor); it held every decoded tensor and
    every encoding at once: ~15 MB here, 2.1 GB for a 1.16 GB checkpoint."""
    import tracemalloc

    import modelhub.repo.archive as archive_module

    expected = _fine_tune_trajectory(repo, n_tensors=16, versions=3, side=256)   # 256 KB per tensor
    monkeypatch.setattr(archive_module, "RAW_CACHE_BYTES", 1 << 20)
    monkeypatch.setattr(archive_module, "KEEP_ENCODED_BYTES", 512 << 10)
    tracemalloc.start()
    try:
        result = archive(repo, alpha=1.5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.n_reencoded > 0
    assert peak < 6 << 20, f"archive peaked at {peak / 2**20:.1f} MB"
    assert_all_snapshots_exact(repo, expected)
