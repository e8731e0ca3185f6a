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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer epochs and records (a few minutes)")
    ap.add_argument("--deep-records", type=int, default=0, help="records of the deep network section "
                    "(default 48, 16 with --quick)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    (xtr, ytr), (xte, yte) = digits()
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
    result["benchmark_time_s"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(result, indent=1))
    ok = all(v.get("agreement", 1.0) == 1.0 for sec in result.values() if isinstance(sec, dict)
             for v in sec.values() if isinstance(v, dict))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
