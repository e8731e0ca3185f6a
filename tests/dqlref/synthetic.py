"""A generator of realistic catalogs for tests and benchmarks (deterministic per seed).

Models are AlexNet/VGG/LeNet-like chains of 10-60 layers (Conv2d, BatchNorm2d,
ReLU, MaxPool2d/AvgPool2d, Flatten, Linear, Dropout, Softmax) named the way
people name them (conv1, relu1, pool1, fc6, fc7 ...), with hyperparameters,
metric series and lineage. Rows are bulk-loaded from CSV through
``read_csv(?)`` so 10,000 versions take seconds, not minutes.
"""
from __future__ import annotations

import csv
import hashlib
import json
import random
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from modelhub.catalog import Catalog
from modelhub.netdef.graph import CALL_FUNCTION, CALL_MODULE, OUTPUT, PLACEHOLDER, Graph, Node

FAMILIES = (  # (name prefix, weight)
    ("alexnet_", 3), ("alexnet-origin", 2), ("alexnet-avgv1", 2), ("vgg", 2), ("lenet", 1), ("deepnet", 1),
)
HPARAM_LRS = (0.1, 0.01, 0.001, 0.0001)


def _node(name: str, op: str, prev: str, attrs: dict | None = None, n_params: int = 0,
          shapes: dict | None = None, kind: str = CALL_MODULE) -> Node:
    return Node(name=name, kind=kind, op=op, attrs=attrs or {}, args=({"node": prev},),
                n_params=n_params, param_shapes=shapes or {})


def make_graph(rng: random.Random, family: str) -> Graph:
    """One chain network; the family decides pool type and layer order."""
    n_conv = {"lenet": rng.randint(2, 3), "alexnet_": 5, "alexnet-origin": 5,
              "alexnet-avgv1": 5}.get(family, rng.randint(6, 13))
    pool_op = "AvgPool2d" if family == "alexnet-avgv1" else rng.choice(["MaxPool2d", "MaxPool2d", "AvgPool2d"])
    pool_first = family == "alexnet-avgv1" or rng.random() < 0.4    # conv -> pool -> relu
    use_bn = family in ("vgg", "deepnet") and rng.random() < 0.6
    nodes = [Node(name="x", kind=PLACEHOLDER, op="input")]
    prev, channels = "x", 3
    pooled = sorted(rng.sample(range(1, n_conv + 1), k=max(1, min(n_conv, rng.randint(2, 5)))))
    if family in ("alexnet_", "alexnet-origin", "alexnet-avgv1"):
        pooled = [1, 2, 5] if family != "alexnet_" else rng.choice([[1, 3, 5], [1, 2, 5]])
    for b in range(1, n_conv + 1):
        out = rng.choice([32, 64, 96, 128, 256])
        k = rng.choice([3, 3, 5]) if b > 1 else rng.choice([11, 7, 5, 3])
        nodes.append(_node(f"conv{b}", "Conv2d", prev,
                           {"in_channels": channels, "out_channels": out, "kernel_size": [k, k],
                            "stride": [1, 1], "padding": [k // 2, k // 2]},
                           channels * out * k * k + out, {"weight": [out, channels, k, k], "bias": [out]}))
        prev, channels = f"conv{b}", out
        seq = []
        if use_bn:
            seq.append((f"bn{b}", "BatchNorm2d", {"num_features": out}, 2 * out, {"weight": [out], "bias": [out]}))
        relu_ = (f"relu{b}", "ReLU", {"inplace": False}, 0, {})
        has_relu = not (family == "alexnet-avgv1" and b in pooled)
        pool_ = (f"pool{b}", pool_op, {"kernel_size": 2, "stride": 2}, 0, {})
        if b in pooled and pool_first:
            seq += [pool_] + ([relu_] if has_relu else [])
        elif b in pooled:
            seq += ([relu_] if has_relu else []) + [pool_]
        else:
            seq.append(relu_)
        for name, op, attrs, n, shapes in seq:
            nodes.append(_node(name, op, prev, attrs, n, shapes))
            prev = name
    if rng.random() < 0.5:
        nodes.append(_node("flatten", "Flatten", prev, {"start_dim": 1}))
    else:
        nodes.append(_node("flatten", "flatten", prev, {}, kind=CALL_FUNCTION))
    prev = "flatten"
    width = channels * 36
    n_fc = rng.randint(2, 3)
    first = n_conv + 1
    for j in range(n_fc):
        idx = first + j
        out = 10 if j == n_fc - 1 else rng.choice([256, 512, 1024])
        nodes.append(_node(f"fc{idx}", "Linear", prev, {"in_features": width, "out_features": out},
                           width * out + out, {"weight": [out, width], "bias": [out]}))
        prev, width = f"fc{idx}", out
        if j < n_fc - 1:
            nodes.append(_node(f"relu{idx}", "ReLU", prev, {"inplace": False})); prev = f"relu{idx}"
            if rng.random() < 0.7:
                nodes.append(_node(f"drop{idx}", "Dropout", prev, {"p": 0.5})); prev = f"drop{idx}"
    if rng.random() < 0.3:
        nodes.append(_node("softmax", "Softmax", prev, {"dim": 1})); prev = "softmax"
    nodes.append(Node(name="output", kind=OUTPUT, op="output", args=({"node": prev},)))
    return Graph(nodes=tuple(nodes), traced=True, rebuildable=True)


def _hparams(rng: random.Random) -> dict:
    hp = {"lr": rng.choice(HPARAM_LRS), "batch_size": rng.choice([32, 64, 128, 256]),
          "optimizer": rng.choice(["sgd", "adam", "rmsprop"]), "epochs": rng.randint(1, 90),
          "pretrained": rng.random() < 0.3}
    if hp["optimizer"] == "sgd":
        hp["momentum"] = rng.choice([0.0, 0.9, 0.99])
    if rng.random() < 0.5:
        hp["weight_decay"] = rng.choice([0.0, 1e-4, 5e-4])
    return hp


def generate(path: Path, n_versions: int, seed: int = 0) -> Catalog:
    """Create ``path/catalog.duckdb`` (and ``path/lock``) holding ``n_versions`` versions."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    cat = Catalog.create(path / "catalog.duckdb", path / "lock")
    rows: dict[str, list[tuple]] = {t: [] for t in ("models", "graphs", "graph_nodes", "graph_edges", "versions",
                                                      "version_parents", "hparams", "metrics")}
    seen_graphs: set[str] = set()
    base = datetime(2015, 6, 1)
    fams, weights = zip(*FAMILIES)
    made, model_no = 0, 0
    # lineage across models (a model started from another's version); its own generator, so the
    # rest of a catalog is the same as before forks existed
    forks = random.Random(seed + 7919)
    all_ids: list[str] = []
    while made < n_versions:
        family = rng.choices(fams, weights)[0]
        model_no += 1
        model = f"{family}{model_no}" if family.endswith("_") else f"{family}-{model_no}"
        n = min(n_versions - made, rng.randint(1, 19))
        t = base + timedelta(days=rng.randint(0, 900), seconds=rng.randint(0, 86400))
        rows["models"].append((model, t))
        graph = make_graph(rng, family)
        prev_id = forks.choice(all_ids) if all_ids and forks.random() < 0.3 else None
        for seq in range(1, n + 1):
            if seq > 1 and rng.random() < 0.08:
                graph = make_graph(rng, family)          # an architecture change
            g = None if rng.random() < 0.02 else graph   # state-dict-only commits have no graph
            if g is not None and g.hash not in seen_graphs:
                _add_graph(rows, g)
                seen_graphs.add(g.hash)
            vid = hashlib.sha256(f"{seed}/{model}/{seq}".encode()).hexdigest()
            t = t + timedelta(hours=rng.randint(1, 200))
            n_params = g.n_params if g else rng.randint(10_000, 1_000_000)
            n_tensors = sum(len(nd.param_shapes) for nd in g.nodes) if g else 4
            rows["versions"].append((vid, model, seq, f"train run {seq}", rng.choice(["alice", "bob", "carol"]),
                                     t, g.hash if g else None, n_params, n_tensors, 4 * n_params, None))
            if prev_id is not None:
                rows["version_parents"].append((vid, prev_id, 0))
                if len(all_ids) > 1 and forks.random() < 0.05:     # a merge: a second parent
                    other = forks.choice(all_ids[:-1])
                    if other != prev_id:
                        rows["version_parents"].append((vid, other, 1))
            for k, v in sorted(_hparams(rng).items()):
                num = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
                rows["hparams"].append((vid, k, json.dumps(v), num, v if isinstance(v, str) else None))
            if rng.random() < 0.9:
                steps = rng.randint(3, 25)
                final_acc = rng.uniform(0.3, 0.97)
                for s in range(steps):
                    frac = (s + 1) / steps
                    acc = final_acc * frac ** 0.5 + rng.uniform(-0.02, 0.02)
                    rows["metrics"].append((vid, "acc", s, round(acc, 6)))
                    rows["metrics"].append((vid, "loss", s, round(2.5 * (1 - acc) + rng.uniform(0, 0.05), 6)))
                    if s % 2 == 1 or s == steps - 1:
                        rows["metrics"].append((vid, "val_acc", s, round(acc - rng.uniform(0, 0.05), 6)))
            prev_id = vid
            all_ids.append(vid)
            made += 1
    _bulk_load(cat, rows)
    return cat


def _add_graph(rows: dict, g: Graph) -> None:
    h = g.hash
    rows["graphs"].append((h, g.traced, g.rebuildable, len(g.layers), g.canonical()))
    for i, nd in enumerate(g.nodes):
        rows["graph_nodes"].append((h, i, nd.name, nd.kind, nd.op, json.dumps(nd.attrs, sort_keys=True), nd.n_params))
    for s, d in g.edges():
        rows["graph_edges"].append((h, s, d))


def _bulk_load(cat: Catalog, rows: dict[str, list[tuple]]) -> None:
    with tempfile.TemporaryDirectory() as tmp, cat.write() as con:
        for table, data in rows.items():
            if not data:
                continue
            f = Path(tmp) / f"{table}.csv"
            with open(f, "w", newline="") as fh:
                w = csv.writer(fh)
                for r in data:
                    w.writerow(["\\N" if v is None else (v.isoformat(sep=" ") if isinstance(v, datetime) else v)
                                for v in r])
            cols = [c[0] for c in con.execute(f"DESCRIBE {table}").fetchall()]
            types = {c[0]: c[1] for c in con.execute(f"DESCRIBE {table}").fetchall()}
            spec = "{" + ", ".join(f"'{c}': '{types[c]}'" for c in cols) + "}"
            # table names and column types come from our own schema, the file path is a parameter
            con.execute(f"INSERT INTO {table} SELECT * FROM read_csv(?, header=false, nullstr='\\N', "
                        f"quote='\"', escape='\"', columns={spec})", [str(f)])
