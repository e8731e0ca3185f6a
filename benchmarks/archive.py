"""Parameter-archive benchmark: compression ratio, entropy bound, checkout speed, plans.

Workloads are made here from real training on sklearn's digits (no download):
  scratch  - a CNN trained from scratch, one snapshot per epoch (one version);
  finetune - the CNN pre-trained on digits 0-4 (snapshots per epoch), then
             fine-tuned on 5-9 with the conv layers frozen (child version);
  siblings - three fine-tunes of the pre-trained base with different learning
             rates (three child versions of one base).
(EfficientNet-Lite0 is used by the issue when installed; it is not here, so
the pre-trained network is the CNN pre-trained on another task.)

For each workload, side by side in one run: raw bytes; ratio of zstd-3 per
snapshot, ZipNN per snapshot, ZipNN with an XOR delta against the previous
snapshot / parent (XOR computed here, then ZipNN; the first snapshot has no
parent and is compressed whole); the archive's ratio (repository + `dlv
archive`, min-storage plan); the order-0 entropy bound of the chosen transform
(sum over stored segments of n * H0); checkout throughput of the latest version
versus safetensors load of the raw file; storage vs recreation cost for alpha
in {1, 1.25, 1.5, 2, 4} (also with every version's last snapshot kept whole),
from one measured storage graph. Every checkout is verified bit-exact.

    python benchmarks/archive.py [--quick] [--out results.json]

``--large`` measures streaming instead, on a synthetic bf16 transformer checkpoint
of ``--large-gb`` GB (default 1.2; 0.25 with --quick) saved sharded as Hugging Face
does (model-0000k-of-0000N.safetensors + model.safetensors.index.json): `dlv
commit DIR` and a cold `dlv checkout` (no hot copy) run as subprocesses, timed
(start-up included), with their peak RSS (GNU time), against ZipNN compressing the
same bytes shard by shard (its own threads; the shards' times summed) and
safetensors loading them; three rounds, medians, memory warmed before every
timed step (benchmarks/warm_memory.py). Targets: commit >= 0.75x
ZipNN's throughput, cold checkout >= 1 GB/s, peak RSS a few times the largest
tensor + 256 MB.

    python benchmarks/archive.py --large [--large-gb 1.2] [--quick] [--out results.json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zstandard
from torch import nn

import modelhub
from modelhub.repo.archive import archive, plan_table
from modelhub.storage.segmented import (SegmentedConfig, decompress_segment, entropy_bits, segment_codings,
                                        segment_lengths)
from modelhub.storage.tensors import decode_tensor, encode_tensor
from modelhub.tensorio import save_safetensors

ALPHAS = (1.0, 1.25, 1.5, 2.0, 4.0)


class DigitsCNN(nn.Module):
    def __init__(self, n_classes: int = 10, width: int = 1024) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 2 * 2, width)
        self.fc2 = nn.Linear(width, 512)
        self.head = nn.Linear(512, n_classes)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        return self.head(torch.relu(self.fc2(x)))


def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return x, torch.tensor(d.target)


def train(model, x, y, epochs: int, lr: float, seed: int, frozen: tuple[str, ...] = ()) -> list[dict]:
    torch.manual_seed(seed)
    for name, p in model.named_parameters():
        p.requires_grad_(not name.startswith(frozen))
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    snaps = []
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        snaps.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return snaps


def make_workloads(epochs: int) -> dict:
    """name -> list of (version name, parent index or None, snapshots)."""
    x, y = digits()
    torch.manual_seed(0)
    scratch = train(DigitsCNN(), x, y, epochs, 1e-3, 1)
    lo, hi = y < 5, y >= 5
    torch.manual_seed(1)
    base_model = DigitsCNN()
    base = train(base_model, x[lo], y[lo], epochs, 1e-3, 2)

    def finetune(lr: float, seed: int) -> list[dict]:
        m = DigitsCNN()
        m.load_state_dict(base[-1])
        return train(m, x[hi], y[hi] - 5, epochs, lr, seed, frozen=("conv",))

    return {
        "scratch": [("scratch", None, scratch)],
        "finetune": [("base", None, base), ("ft", 0, finetune(1e-3, 3))],
        "siblings": [("base", None, base[-1:])] + [(f"ft_lr{lr:g}", 0, finetune(lr, 10 + i)[-1:])
                                                  for i, lr in enumerate((1e-2, 1e-3, 1e-4))],
    }


def flat(sd: dict) -> bytes:
    return b"".join(t.contiguous().numpy().tobytes() for t in sd.values())


def zipnn_size(data: bytes) -> int:
    from zipnn import ZipNN

    z = ZipNN(bytearray_dtype="float32", input_format="byte")
    return len(z.compress(bytearray(data)))  # compress() overwrites bytes input: pass a copy


def baselines(versions) -> dict:
    raw = zstd3 = zipnn = zipnn_delta = 0
    cctx = zstandard.ZstdCompressor(level=3)
    last_of = []
    for _, parent, snaps in versions:
        prev = last_of[parent] if parent is not None else None
        for sd in snaps:
            data = flat(sd)
            raw += len(data)
            zstd3 += len(cctx.compress(data))
            zipnn += zipnn_size(data)
            if prev is None:
                zipnn_delta += zipnn_size(data)
            else:
                xor = (np.frombuffer(data, "<u4") ^ np.frombuffer(prev, "<u4")).tobytes()
                zipnn_delta += zipnn_size(xor)
            prev = data
        last_of.append(prev)
    return {"raw_bytes": raw, "zstd3_bytes": zstd3, "zipnn_bytes": zipnn, "zipnn_delta_bytes": zipnn_delta}


def build_repo(root: Path, versions) -> tuple:
    repo = modelhub.init_repo(root)
    ids = []
    for name, parent, snaps in versions:
        v = repo.commit(snaps[-1], name=name, message=name, snapshots=snaps[:-1],
                        parent=ids[parent] if parent is not None else None)
        ids.append(v.id)
    return repo, ids


def tensor_blob_bytes(repo) -> tuple[int, float]:
    """(stored bytes of referenced tensor blobs, order-0 entropy bound in bytes)."""
    stored = 0
    bound = 0.0
    seen = set()
    with repo.catalog.read() as con:
        for nbytes, enc in con.execute("SELECT nbytes, encoding FROM tensor_data").fetchall():
            manifest = json.loads(enc)
            lengths = segment_lengths(manifest, int(nbytes), repo.store.get)
            for h, coding, length in zip(manifest["segments"], segment_codings(manifest), lengths):
                if h in seen:
                    continue
                seen.add(h)
                blob = repo.store.get(h)
                stored += len(blob)
                contents = decompress_segment(blob, h, length, coding)
                bound += entropy_bits(contents) / 8
    return stored, bound


def verify(repo, ids, versions) -> None:
    for vid, (_, _, snaps) in zip(ids, versions):
        for i, sd in enumerate(snaps):
            got = repo.checkout(vid, snapshot=i, rebuild_module=False).state_dict
            for k, t in sd.items():
                a, b = got[k].contiguous().view(torch.int32), t.contiguous().view(torch.int32)
                if not torch.equal(a, b):
                    raise SystemExit(f"NOT BIT-EXACT: {k} of snapshot {i}")


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def checkout_speed(repo, vid, sd, tmp: Path, repeats: int) -> dict:
    """Checkout of ``vid`` (the latest version) versus safetensors on the same tensors.

    safetensors' ``load_file`` maps the file and reads nothing until a tensor
    is used, so its time is that of a mapping; the number a user feels is the
    time until the weights are in the model. Both are reported, each side by
    side with the matching checkout: the state dict alone (hot copy: mapped
    and verified, which reads every byte), and the weights loaded into a
    module, each tool's usual way (safetensors: ``load_state_dict(load_file())``;
    modelhub: ``checkout(model_class=...)``). ``cold`` is the archive decode with
    hot copies off (``DLV_HOT_COPIES=0``), i.e. any version but the latest.
    """
    import os

    from safetensors.torch import load_file

    from modelhub.repo.reads import snapshot_entries
    from modelhub.repo.tensorstore import load_tensor

    path = tmp / "latest.safetensors"
    save_safetensors(path, sd)
    mb = sum(t.numel() * t.element_size() for t in sd.values()) / 1e6
    def fresh_module() -> nn.Module:  # the network, parameters allocated but not yet loaded
        root = nn.Module()
        for name, t in sd.items():
            *path, leaf = name.split(".")
            m = root
            for part in path:
                if not hasattr(m, part):
                    m.add_module(part, nn.Module())
                m = getattr(m, part)
            m.register_parameter(leaf, nn.Parameter(torch.empty_like(t), requires_grad=t.is_floating_point()))
        return root

    repo.checkout(vid, rebuild_module=False)  # writes the hot copy if the archive re-encode dropped none
    assert repo.hot.version_ids() & {vid}, "the latest version has no hot copy"
    t_st = best_of(lambda: load_file(str(path)), repeats)
    # each tool's usual way into a model: safetensors' load_file + load_state_dict (copies),
    # modelhub's checkout(model_class=...) (adopts the verified tensors when nothing is tied)
    t_st_mod = best_of(lambda: fresh_module().load_state_dict(load_file(str(path))), repeats)
    t_ck = best_of(lambda: repo.checkout(vid, rebuild_module=False), repeats)
    t_ck_mod = best_of(lambda: repo.checkout(vid, model_class=fresh_module), repeats)
    os.environ["DLV_HOT_COPIES"] = "0"
    try:
        t_cold = best_of(lambda: repo.checkout(vid, rebuild_module=False), repeats)
    finally:
        del os.environ["DLV_HOT_COPIES"]

    def decode_only():
        with repo.catalog.read() as con:
            for _, th in snapshot_entries(con, vid, None):
                load_tensor(con, repo.store, th)
    t_dec = best_of(decode_only, repeats)

    # the codec alone: blobs read from the object store (checksums verified), no catalog
    with repo.catalog.read() as con:
        rows = con.execute("SELECT tensor_hash, nbytes, encoding FROM tensor_data").fetchall()
        latest = [th for _, th in snapshot_entries(con, vid, None)]
    manifests = {th: (int(nb), json.loads(enc)) for th, nb, enc in rows}

    def codec_only():
        memo = {}

        def get(th):
            if th not in memo:
                nb, m = manifests[th]
                memo[th] = decode_tensor(m, repo.store.get, nb, base=get)
            return memo[th]
        for th in latest:
            get(th)
    t_codec = best_of(codec_only, repeats)
    return {"mb": round(mb, 3),
            "safetensors_load_file_MBps": round(mb / t_st, 1), "checkout_MBps": round(mb / t_ck, 1),
            "checkout_vs_safetensors_load_file": round(t_st / t_ck, 3),
            "safetensors_into_module_MBps": round(mb / t_st_mod, 1),
            "checkout_into_module_MBps": round(mb / t_ck_mod, 1),
            "checkout_vs_safetensors_into_module": round(t_st_mod / t_ck_mod, 3),
            "checkout_ms": round(t_ck * 1e3, 2), "safetensors_load_file_ms": round(t_st * 1e3, 3),
            "cold_checkout_MBps": round(mb / t_cold, 1), "decode_MBps": round(mb / t_dec, 1),
            "codec_decode_MBps": round(mb / t_codec, 1), "codec_vs_safetensors_load_file": round(t_st / t_codec, 3)}


def large_checkout(tmp: Path, repeats: int, mb: int) -> dict:
    """Checkout speed on a model large enough that per-call costs (catalog, mapping) amortize:
    ``mb`` MB of float32 in 16 MB layers, committed and archived like the workloads."""
    g = torch.Generator().manual_seed(0)
    n = max(1, mb // 16)
    sd = {f"layer{i}.weight": torch.randn(2048, 2048, generator=g) * 0.02 for i in range(n)}
    repo = modelhub.init_repo(tmp / "large")
    t = time.perf_counter()
    info = repo.commit(sd, name="large", message="large model")
    commit_s = time.perf_counter() - t
    got = repo.checkout(info.id, rebuild_module=False).state_dict
    assert all(torch.equal(got[k].view(torch.int32), v.view(torch.int32)) for k, v in sd.items())
    out = checkout_speed(repo, info.id, sd, tmp, repeats)
    out["commit_MBps"] = round(out["mb"] / commit_s, 1)
    stats = repo.stats()
    out["stored_bytes"], out["hot_copy_bytes"] = stats.stored_bytes, stats.hot_bytes
    return out


def make_checkpoint(folder: Path, gb: float, shard_gb: float = 0.5) -> dict:
    """A bf16 transformer-shaped checkpoint of ~``gb`` GB (weights ~ N(0, 0.02) like an
    initialized or lightly trained LLM), sharded by ``shard_gb``, with its index JSON."""
    hidden, inter, vocab = 2048, 5632, 32000
    per_layer = (4 * hidden * hidden + 3 * hidden * inter + 2 * hidden) * 2
    n_layers = max(1, round((gb * 1e9 - vocab * hidden * 2) / per_layer))
    g = torch.Generator().manual_seed(0)

    def w(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).to(torch.bfloat16)

    tensors = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(n_layers):
        pre = f"model.layers.{i}."
        tensors += [(pre + f"self_attn.{p}_proj.weight", (hidden, hidden)) for p in "qkvo"]
        tensors += [(pre + "mlp.gate_proj.weight", (inter, hidden)), (pre + "mlp.up_proj.weight", (inter, hidden)),
                    (pre + "mlp.down_proj.weight", (hidden, inter)),
                    (pre + "input_layernorm.weight", (hidden,)), (pre + "post_attention_layernorm.weight", (hidden,))]
    shards, cur, size = [], {}, 0
    for name, shape in tensors:
        t = w(*shape) if len(shape) > 1 else (1 + w(*shape))
        if cur and size + t.numel() * 2 > shard_gb * 1e9:
            shards.append(cur)
            cur, size = {}, 0
        cur[name] = t
        size += t.numel() * 2
    shards.append(cur)
    folder.mkdir(parents=True)
    weight_map, total, largest = {}, 0, 0
    for k, shard in enumerate(shards, 1):
        fname = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        from safetensors.torch import save_file
        save_file(shard, folder / fname, metadata={"format": "pt"})
        for name, t in shard.items():
            weight_map[name] = fname
            total += t.numel() * 2
            largest = max(largest, t.numel() * 2)
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return {"bytes": total, "tensors": len(weight_map), "shards": len(shards), "largest_tensor_bytes": largest,
            "layers": n_layers}


def _timed_subprocess(argv: list[str], env: dict | None = None) -> tuple[float, int]:
    """(seconds, peak RSS bytes) of a command. The peak comes from GNU time's own child: a
    child forked from this (large) process would report this process's size as its peak."""
    import subprocess

    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        t = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name, *argv], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seconds = time.perf_counter() - t
        if proc.returncode != 0:
            raise RuntimeError(f"{argv} failed: {proc.stderr.decode()[-2000:]}")
        peak_kb = int(rss.read().split()[-1])
    return seconds, peak_kb * 1024


def large_streaming(tmp: Path, gb: float) -> dict:
    """Streaming commit and cold checkout of a sharded bf16 checkpoint versus ZipNN and safetensors."""
    import os

    ckpt = tmp / "ckpt"
    info = make_checkpoint(ckpt, gb)
    files = sorted(ckpt.glob("*.safetensors"))
    mb = info["bytes"] / 1e6
    # ZipNN compressing the same tensor bytes, shard by shard (its default threads)
    from zipnn import ZipNN
    from safetensors.torch import load as st_load

    env = dict(os.environ, DLV_AUTHOR="bench", PYTHONPATH=os.pathsep.join(
        [str(Path(modelhub.__file__).resolve().parents[1])] + [p for p in sys.path if p]))
    cold_env = dict(env, DLV_HOT_COPIES="0")
    dlv = [sys.executable, "-m", "modelhub"]
    from warm_memory import warm

    # three rounds, medians; before every timed step the model's bytes twice and 256 MB of memory are
    # touched and freed, so that no step pays for the host backing its pages and another not (warm_memory.py)
    warm_bytes = 2 * info["bytes"] + (256 << 20)
    zipnn_runs, st_runs, commit_runs, checkout_runs = [], [], [], []
    commit_rss = checkout_rss = 0
    for round_ in range(3):
        zipnn_s = zipnn_out = 0
        for f in files:
            data = bytearray(f.read_bytes())   # it compresses in place: the copy is not on its clock
            z = ZipNN(bytearray_dtype="bfloat16", input_format="byte")
            warm(warm_bytes)
            t = time.perf_counter()
            zipnn_out += len(z.compress(data))
            zipnn_s += time.perf_counter() - t
            del data
        zipnn_runs.append(zipnn_s)
        warm(warm_bytes)
        t = time.perf_counter()
        for f in files:
            st_load(f.read_bytes())   # read and materialize every tensor (load_file only maps the file)
        st_runs.append(time.perf_counter() - t)
        repo = tmp / f"repo{round_}"
        modelhub.init_repo(repo)
        warm(warm_bytes)
        seconds, rss = _timed_subprocess(dlv + ["commit", str(ckpt), "--name", "llm", "-m", "large",
                                                "--repo", str(repo)], env)
        commit_runs.append(seconds)
        commit_rss = max(commit_rss, rss)
        out = tmp / f"out{round_}"
        warm(warm_bytes)
        seconds, rss = _timed_subprocess(dlv + ["checkout", "llm", "-o", str(out), "--repo", str(repo)], cold_env)
        checkout_runs.append(seconds)
        checkout_rss = max(checkout_rss, rss)
        for f in files:
            assert (out / f.name).read_bytes() == f.read_bytes(), f"{f.name} differs after checkout"
        shutil.rmtree(out)
        if round_ < 2:
            shutil.rmtree(repo)
    zipnn_s, st_load_s = statistics.median(zipnn_runs), statistics.median(st_runs)
    commit_s, checkout_s = statistics.median(commit_runs), statistics.median(checkout_runs)
    # what `dlv archive` pays to size every tensor's tuned encoding (the plan; nothing is written)
    dry_s, dry_rss = _timed_subprocess(dlv + ["archive", "--dry-run", "--repo", str(repo)], env)
    # what both commands import before their work (neither imports torch: tests/test_startup.py)
    idle_s, idle_rss = _timed_subprocess([sys.executable, "-c", "import modelhub.cli, modelhub.repo.repository, "
                                          "modelhub.catalog.db, modelhub.storage.tensors"], env)
    r = modelhub.Repo(repo).stats()
    commit_mbps, zipnn_mbps, checkout_mbps = mb / commit_s, mb / zipnn_s, mb / checkout_s
    # the CLI's start-up (imports) is paid by both commands; ZipNN's figure has none
    commit_work_mbps, checkout_work_mbps = mb / max(commit_s - idle_s, 1e-9), mb / max(checkout_s - idle_s, 1e-9)
    bound = 4 * info["largest_tensor_bytes"] + (256 << 20) + idle_rss
    return {
        **info, "cpu_cores": os.cpu_count(),
        "zipnn_ratio": round(info["bytes"] / zipnn_out, 4), "archive_ratio": round(info["bytes"] / r.stored_bytes, 4),
        "zipnn_compress_MBps": round(zipnn_mbps, 1), "commit_MBps": round(commit_mbps, 1),
        "commit_over_zipnn": round(commit_mbps / zipnn_mbps, 3),
        "startup_s": round(idle_s, 2), "commit_MBps_without_startup": round(commit_work_mbps, 1),
        "commit_over_zipnn_without_startup": round(commit_work_mbps / zipnn_mbps, 3),
        "cold_checkout_MBps": round(checkout_mbps, 1), "cold_checkout_MBps_without_startup": round(checkout_work_mbps, 1),
        "safetensors_load_MBps": round(mb / st_load_s, 1), "zipnn_threads": "library default",
        "peak_rss_commit_MB": round(commit_rss / 1e6), "peak_rss_checkout_MB": round(checkout_rss / 1e6),
        "peak_rss_import_only_MB": round(idle_rss / 1e6), "rss_bound_MB": round(bound / 1e6),
        "hot_copy_bytes": r.hot_bytes,
        "archive_dry_run_s": round(dry_s, 1), "archive_dry_run_MBps": round(mb / dry_s, 1),
        "peak_rss_archive_dry_run_MB": round(dry_rss / 1e6),
        "rounds_s": {"zipnn_compress": [round(x, 3) for x in zipnn_runs], "commit": [round(x, 3) for x in commit_runs],
                     "cold_checkout": [round(x, 3) for x in checkout_runs]},
        "targets": {"commit >= 0.75x zipnn (start-up included)": commit_mbps >= 0.75 * zipnn_mbps,
                    "cold checkout >= 1 GB/s (start-up included)": checkout_mbps >= 1000,
                    "peak RSS <= 4 x largest tensor + 256 MB (+ interpreter)": max(commit_rss, checkout_rss) <= bound},
    }


def estimate_agreement(versions, limit: int = 60) -> dict:
    """How often the entropy estimate picks the op that zstd really makes smallest."""
    agree = total = 0
    for _, _, snaps in versions:
        for a, b in zip(snaps, snaps[1:]):
            for k in a:
                if total >= limit or a[k].dtype != torch.float32 or torch.equal(a[k], b[k]):
                    continue
                ra, rb = a[k].numpy().tobytes(), b[k].numpy().tobytes()
                auto = encode_tensor(rb, "float32", list(b[k].shape), codec="segmented", base_raw=ra, base_hash="0" * 64)
                sizes = {}
                for op in ("none", "xor", "sub", "osub"):
                    e = encode_tensor(rb, "float32", list(b[k].shape), config=SegmentedConfig(delta=op),
                                      base_raw=ra, base_hash="0" * 64)
                    sizes[op] = sum(len(x) for x in e.blobs)
                chosen = (auto.manifest["delta"] or {}).get("op", "none")
                agree += sizes[chosen] <= min(sizes.values()) * 1.005
                total += 1
    return {"pairs": total, "estimate_picks_smallest_within_0.5pct": agree}


def layout_study(sd: dict) -> dict:
    """Measured choice of the float split and zstd level on one snapshot."""
    out = {}
    for layout in ("exponent-first", "bytes"):
        for strategy, level in (("level", 3), ("level", 19), ("auto", 3)):
            size = 0
            for t in sd.values():
                e = encode_tensor(t.numpy().tobytes(), "float32", list(t.shape),
                                  config=SegmentedConfig(layout=layout, level=level, strategy=strategy))
                size += sum(len(b) for b in e.blobs)
            out[f"{layout}/" + (f"zstd{level}" if strategy == "level" else "auto")] = size
    return out


def run_workload(name, versions, tmp: Path, repeats: int) -> dict:
    res = {"workload": name, "versions": len(versions), "snapshots": sum(len(s) for _, _, s in versions)}
    t0 = time.perf_counter()
    res.update(baselines(versions))
    raw = res["raw_bytes"]
    repo, ids = build_repo(tmp / name, versions)
    committed, _ = tensor_blob_bytes(repo)
    res["archive_commit_bytes"] = committed  # whole segmented tensors, identical tensors once
    # storage versus recreation for each alpha, from one measured storage graph
    with repo.catalog.read() as con:
        plans = plan_table(con, repo.store, ALPHAS)
        plans_latest_whole = plan_table(con, repo.store, ALPHAS, keep_latest_whole=True)
    for row in plans + plans_latest_whole:
        row["ratio"] = round(raw / row["plan_storage_bytes"], 3)
    # the storage-optimal plan (no recreation bound) is the archive's headline ratio
    r = archive(repo, alpha=1e9)
    verify(repo, ids, versions)
    stored, bound = tensor_blob_bytes(repo)
    res.update({
        "archive_bytes": stored, "archive_algorithm": r.algorithm, "entropy_bound_bytes": int(bound),
        "ratio_zstd3": round(raw / res["zstd3_bytes"], 3), "ratio_zipnn": round(raw / res["zipnn_bytes"], 3),
        "ratio_zipnn_delta": round(raw / res["zipnn_delta_bytes"], 3), "ratio_archive": round(raw / stored, 3),
        "archive_vs_zipnn_delta": round(res["zipnn_delta_bytes"] / stored, 3),
        "archive_over_entropy_bound": round(stored / bound, 4),
        "bit_exact": True, "plans": plans, "plans_keep_latest_whole": plans_latest_whole,
    })
    latest_sd = versions[-1][2][-1]
    # hot copies (each model's latest version, uncompressed, for fast checkout) are a cache
    # outside the archive; what they add to the footprint is reported, not hidden
    hot = repo.stats().hot_bytes
    res["hot_copy_bytes"] = hot
    res["ratio_archive_plus_hot_copies"] = round(raw / (stored + hot), 3)
    res["checkout_min_storage_plan"] = checkout_speed(repo, ids[-1], latest_sd, tmp, repeats)
    r = archive(repo, alpha=2.0, keep_latest_whole=True)
    verify(repo, ids, versions)
    stored, _ = tensor_blob_bytes(repo)
    res["alpha2_keep_latest_whole"] = {"stored_bytes": stored, "ratio": round(raw / stored, 3),
                                       "vs_zipnn_delta": round(res["zipnn_delta_bytes"] / stored, 3),
                                       "checkout": checkout_speed(repo, ids[-1], latest_sd, tmp, repeats)}
    # single model: the latest snapshot alone
    single = flat(latest_sd)
    seg = sum(sum(len(b) for b in encode_tensor(t.numpy().tobytes(), "float32", list(t.shape), codec="segmented").blobs)
              for t in latest_sd.values())
    res["single_model"] = {"raw": len(single), "archive": seg, "zipnn": zipnn_size(single),
                           "zstd3": len(zstandard.ZstdCompressor(level=3).compress(single)),
                           "archive_vs_zipnn": round(zipnn_size(single) / seg, 4)}
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer epochs and repeats (CI smoke run)")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--large", action="store_true", help="streaming commit/checkout of a sharded checkpoint instead")
    ap.add_argument("--large-gb", type=float, help="size of the --large checkpoint in GB (default 1.2: above the 1 GiB hot copy cap; 0.25 with --quick)")
    args = ap.parse_args(argv)
    if args.large:
        tmp = Path(tempfile.mkdtemp(prefix="mh-archive-large-"))
        try:
            report = {"benchmark": "archive --large", "quick": args.quick,
                      "streaming": large_streaming(tmp, args.large_gb or (0.25 if args.quick else 1.2))}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        text = json.dumps(report, indent=1)
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n")
        return 0
    torch.set_num_threads(2)
    epochs = 3 if args.quick else 6
    repeats = 3 if args.quick else 5
    t0 = time.perf_counter()
    workloads = make_workloads(epochs)
    train_s = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix="mh-archive-bench-"))
    try:
        results = [run_workload(n, v, tmp, repeats) for n, v in workloads.items()]
        extra = {"checkout_large_model": large_checkout(tmp, repeats, 64 if args.quick else 256),
                 "estimate_agreement": estimate_agreement(workloads["scratch"][0:1] + workloads["finetune"][1:]),
                 "layout_study_latest_scratch_snapshot": layout_study(workloads["scratch"][0][2][-1])}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report = {"benchmark": "archive", "quick": args.quick, "epochs": epochs, "train_seconds": round(train_s, 1),
              "params": sum(t.numel() for t in workloads["scratch"][0][2][-1].values()),
              "workloads": results, **extra, "total_seconds": round(time.perf_counter() - t0, 1)}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
