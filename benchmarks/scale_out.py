"""Scale-out (issue 9): the local backend versus Ray with 2 workers on the same workload.

The workload is benchmarks/model_selection.py's: a CNN backbone (frozen) on sklearn's digits
upsampled to 32x32, tiled with small noise to more records, and its candidates (heads of three
shapes at two learning rates, fine-tuning the last one or two blocks). Each backend runs the
whole selection from an empty feature store: profile (shared, so both plans are the same),
extract what the plan stores, train the fused groups. Reported side by side:

  wall seconds       whole run, extraction passes, training (ReuseStats.extract_s/train_s)
  per-record cost    extraction seconds / records, and the planner's measured prefix compute
  overhead ratio     ray / local (above 1: Ray costs more here)
  bytes per worker   what each Ray worker read (input records, stored features) and wrote
  equality           chunk files byte-identical, plans equal, trained heads bit-identical

A second Ray run on a fresh store ("ray_warm") shows the cost once the cluster is up.
Torch uses one thread in this process and in every worker (--threads), so "local" is one
core and "ray" two workers of one core each. Prints one JSON object; --quick shrinks it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_selection import candidates, load_digits_32, make_backbone  # noqa: E402

from modelhub.engine.backend import BackendOptions  # noqa: E402
from modelhub.engine.data import DataView  # noqa: E402
from modelhub.engine.features import FeatureStore  # noqa: E402
from modelhub.engine.selection import run_selection  # noqa: E402


def tiled_digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits_32()
    reps = -(-n // len(x))
    rng = np.random.default_rng(0)
    xs = np.concatenate([x] * reps)[:n]
    xs = (xs + rng.normal(0, 0.02, xs.shape)).astype(np.float32)   # copies differ a little
    return xs, np.concatenate([y] * reps)[:n]


def flops_per_record(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Multiply-adds x 2 of conv and linear layers for one record (for the GPU estimate)."""
    total = 0

    def hook(m, inputs, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += 2 * out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.Linear):
            total += 2 * m.in_features * m.out_features
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return total


def chunk_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("r*")) if p.is_file()}


def heads_identical(a, b) -> bool:
    for x, y in zip(a.outcomes, b.outcomes):
        sx, sy = x.model.state_dict(), y.model.state_dict()
        for k in sx:
            if not torch.equal(sx[k].contiguous().view(-1).view(torch.uint8), sy[k].contiguous().view(-1).view(torch.uint8)):
                return False
        if [(n, s, v.hex()) for n, s, v in x.series] != [(n, s, v.hex()) for n, s, v in y.series]:
            return False
    return len(a.outcomes) == len(b.outcomes)


def run(cands_fn, data: DataView, store: FeatureStore, backend, chunk_records: int) -> tuple[object, float]:
    t0 = time.perf_counter()
    result = run_selection(cands_fn(), data, store=store, backend=backend, chunk_records=chunk_records)
    return result, time.perf_counter() - t0


def summary(result, wall: float, n: int) -> dict:
    r = result.reuse
    return {"wall_s": round(wall, 3), "extract_s": round(r.extract_s, 3), "train_s": round(r.train_s, 3),
            "extract_per_record_ms": round(1e3 * r.extract_s / n, 4), "records_extracted": r.records_extracted,
            "bytes_written": r.bytes_written, "fused_groups": list(r.fused_groups)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller workload (smoke run)")
    ap.add_argument("--records", type=int, default=None, help="records (default 7200; --quick 1200)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per candidate (default 2; --quick 1)")
    ap.add_argument("--workers", type=int, default=2, help="Ray workers (a local cluster of this many CPUs)")
    ap.add_argument("--chunk-records", type=int, default=None, help="records per feature chunk (default n/8)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads here and in every worker")
    args = ap.parse_args(argv)
    import ray

    torch.set_num_threads(args.threads)
    n = args.records or (1200 if args.quick else 7200)
    epochs = args.epochs or (1 if args.quick else 2)
    chunk = args.chunk_records or max(64, n // 8)      # enough chunks to keep every worker busy
    x, y = tiled_digits(n)
    data = DataView("scale-out-digits", 1, x, y, name="digits32x")
    torch.manual_seed(0)
    bb = make_backbone().eval()
    cands_fn = lambda: candidates(bb, epochs)  # noqa: E731 - fresh copies for every run

    tmp = Path(tempfile.mkdtemp(prefix="modelhub-scale-out-"))
    try:
        local_store = FeatureStore(tmp / "local")
        local, local_wall = run(cands_fn, data, local_store, "local", chunk)

        def shared_profile(name: str) -> FeatureStore:   # same measurements -> the same plan
            (tmp / name).mkdir()
            for meta in ("profile.json", "disk.json"):
                shutil.copy(tmp / "local" / meta, tmp / name / meta)
            return FeatureStore(tmp / name)

        t0 = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        ray_init_s = time.perf_counter() - t0
        opts = BackendOptions("ray", workers=args.workers)
        cold, cold_wall = run(cands_fn, data, shared_profile("ray"), opts, chunk)
        warm, warm_wall = run(cands_fn, data, shared_profile("ray_warm"), opts, chunk)
        ray.shutdown()

        files = chunk_bytes(tmp / "local")
        prof = local_store.load_meta("profile")
        # the planner's own measurement: seconds per record through every frozen stage of the tree
        prefix_compute = sum(v[0] for k, v in prof.items() if k.startswith("cpu/4/"))
        per_record_s = local.reuse.extract_s / n
        fl = flops_per_record(bb, tuple(x.shape[1:]))
        workers = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in w.items()} for w in cold.reuse.workers]
        out = {
            "workload": {"records": n, "record_shape": list(x.shape[1:]), "candidates": len(local.outcomes),
                         "epochs": epochs, "chunk_records": chunk, "extraction_batch_size": local.reuse.extraction_batch_size,
                         "materialized_nodes": len(local.plan.materialize), "torch_threads": args.threads,
                         "ray_workers": args.workers, "prefix_flops_per_record": fl},
            "local": summary(local, local_wall, n),
            "ray_cold": {**summary(cold, cold_wall, n), "ray_init_s": round(ray_init_s, 3)},
            "ray_warm": summary(warm, warm_wall, n),
            "overhead_ratio": {
                "whole_run_cold": round(cold_wall / local_wall, 3), "whole_run_warm": round(warm_wall / local_wall, 3),
                "extraction_warm": round(warm.reuse.extract_s / max(local.reuse.extract_s, 1e-9), 3),
                "training_warm": round(warm.reuse.train_s / max(local.reuse.train_s, 1e-9), 3)},
            "bytes_per_worker": workers,
            "per_record_cost": {
                "local_extract_s": per_record_s,
                "planner_prefix_compute_s": prefix_compute,
                "extract_cpu_s_in_workers": sum(w["seconds"] for w in cold.reuse.workers if w["role"] == "extract") / n},
            "estimate_10M_records_cpu_workers_h": {
                str(k): round(10_000_000 * per_record_s / k / 3600, 2) for k in (1, 2, 16, 64)},
            "identical": {
                "plan": cold.plan.materialize == local.plan.materialize == warm.plan.materialize,
                "feature_files": chunk_bytes(tmp / "ray") == files == chunk_bytes(tmp / "ray_warm"),
                "n_feature_files": len(files),
                "trained_heads": heads_identical(local, cold) and heads_identical(local, warm)},
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=2))
    return 0 if all(v for k, v in out["identical"].items() if k != "n_feature_files") else 1


if __name__ == "__main__":
    raise SystemExit(main())
