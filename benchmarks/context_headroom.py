"""How much could richer contexts save? Empirical conditional entropies of a trajectory's deltas.

For every changed float tensor of a trajectory (benchmarks/context_trajectories.py; each snapshot
against the one before, the ULP difference ``osub`` the context coder uses), the ideal code length
(sum of -log2 p(symbol | context), empirical, no table cost) of:

  count    number of significant bytes of the delta word,
  lead     its leading byte (elements with count > 0),
  low_top  the byte just below the lead (count >= 2): the coder stores the low bytes raw,
  sign     the sign of the update in real units,

under the context the coder uses (the parent's exponent field) and richer ones a decoder could also
know: the parent's top 2 mantissa bits, the left neighbour's count and lead (known only to a
two-phase decoder, which would get about half of the neighbour gain), the parent's sign.

    python benchmarks/context_headroom.py [--workloads finetune,scratch,bf16] [--seed 0]

Prints one JSON line per workload, sizes in bytes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import context_trajectories as ct  # noqa: E402

from modelhub.storage.bitfields import FLOAT_FORMATS, UINT_OF_SIZE  # noqa: E402
from modelhub.storage.byteclass import byte_counts  # noqa: E402
from modelhub.storage.context_coding import ITEMSIZES, parent_exponent  # noqa: E402
from modelhub.storage.deltas import apply_delta  # noqa: E402


def cond_bytes(sym: np.ndarray, ctx: np.ndarray) -> float:
    """Empirical H(sym | ctx) * n, in bytes."""
    key = ctx.astype(np.int64) * 512 + sym.astype(np.int64)
    joint = np.bincount(key)
    marg = np.bincount(ctx.astype(np.int64))
    joint, marg = joint[joint > 0], marg[marg > 0]
    return float(-(joint * np.log2(joint)).sum() + (marg * np.log2(marg)).sum()) / 8


def headroom(name: str, seed: int) -> dict:
    snaps = ct.trajectory(name, seed=seed)
    out: dict[str, float] = {}

    def add(key: str, value: float) -> None:
        out[key] = out.get(key, 0.0) + value

    for t in range(1, len(snaps)):
        for tname, (dtype, _shape, raw) in snaps[t].items():
            base = snaps[t - 1][tname][2]
            if raw == base or dtype not in ITEMSIZES:
                continue
            s = ITEMSIZES[dtype]
            w, bw = np.frombuffer(raw, UINT_OF_SIZE[s]), np.frombuffer(base, UINT_OF_SIZE[s])
            if w.size < 4096:
                continue
            z = apply_delta("osub", w, bw)
            cnt = byte_counts(z).astype(np.int64)
            zb = z.view(np.uint8).reshape(-1, s)
            rows = np.arange(z.size)
            lead = np.where(cnt > 0, zb[rows, np.maximum(cnt - 1, 0)], 0).astype(np.int64)
            low_top = np.where(cnt > 1, zb[rows, np.maximum(cnt - 2, 0)], 0).astype(np.int64)
            exp = parent_exponent(bw, dtype).astype(np.int64)
            man = FLOAT_FORMATS[dtype][1]
            mtop = ((bw >> bw.dtype.type(man - 2)) & bw.dtype.type(3)).astype(np.int64)
            psign = (bw >> bw.dtype.type(8 * s - 1)).astype(np.int64)
            prev_cnt = np.concatenate(([0], cnt[:-1]))
            prev_lead = np.minimum(np.concatenate(([0], lead[:-1])) >> 5, 7)
            nz, two = cnt > 0, cnt > 1
            add("count | exp (the coder's context)", cond_bytes(cnt, exp))
            add("count | exp, parent mantissa top 2 bits", cond_bytes(cnt, exp * 4 + mtop))
            add("count | exp, left neighbour's count", cond_bytes(cnt, exp * 16 + prev_cnt))
            add("count | exp, left count, left lead (3 bits)", cond_bytes(cnt, (exp * 16 + prev_cnt) * 8 + prev_lead))
            add("lead | count, exp (the coder's context)", cond_bytes(lead[nz], (exp * 16 + cnt)[nz]))
            add("lead | count, exp, parent mantissa top 2 bits", cond_bytes(lead[nz], ((exp * 16 + cnt) * 4 + mtop)[nz]))
            add("lead | count, exp, left count, left lead (3 bits)",
                cond_bytes(lead[nz], (((exp * 16 + cnt) * 16 + prev_cnt) * 8 + prev_lead)[nz]))
            add("low_top | count (stored raw: 1 byte each)", cond_bytes(low_top[two], cnt[two]))
            add("low_top raw bytes", float(two.sum()))
            sign = (z & z.dtype.type(1)).astype(np.int64)   # osub is zigzag-coded: bit 0 is the sign
            add("sign | nothing", cond_bytes(sign[nz], np.zeros(int(nz.sum()), np.int64)))
            add("sign | parent sign, exp", cond_bytes(sign[nz], (psign * 4096 + exp)[nz]))
    return {"workload": name, "seed": seed, "bytes": {k: round(v) for k, v in out.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default=",".join(ct.WORKLOADS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for name in args.workloads.split(","):
        print(json.dumps(headroom(name, args.seed)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
