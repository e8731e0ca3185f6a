from __future__ import annotations

from ..errors import InputError
from ..sizes import size_bytes
from .common import repo_of
from .ui import human_bytes

HELP = "re-encode stored weights under a storage plan (deltas between snapshots and versions)"
DESCRIPTION = (
    "Compute the storage plan over every snapshot of every version (ModelHub PAS: MST, SPT, PAS-MT, PAS-PT, "
    "each '+tightened' where the slack it left under the bound was spent on more deltas) "
    "with minimum storage such that each snapshot's recreation cost is at most ALPHA times its cost with "
    "every tensor stored whole, then re-encode tensors atomically. Old blobs are left for `dlv gc`. "
    "Recreation cost is in bytes: compressed bytes read plus raw bytes decoded, along each delta chain. "
    "Storage never grows with alpha (a plan that meets a smaller alpha meets every larger one). "
    "Sizes measured by earlier archives and dry runs are kept in the catalog: an archive encodes only "
    "what is new to size it (--remeasure: everything)."
)

def parse_size(text: str) -> int:
    """``--budget``: a size as everywhere in dlv (modelhub/sizes.py: binary units)."""
    n = size_bytes(text)
    if n is None:
        raise InputError(f"--budget {text!r} is not a size; write e.g. 500000, 800K or 1.5M (1K = 1024 bytes)")
    return n


def configure(p) -> None:
    p.add_argument("--alpha", type=float, default=2.0,
                   help="recreation bound: each snapshot may cost ALPHA x its all-whole cost (default 2; 1 = all whole)")
    p.add_argument("--scheme", choices=("independent", "parallel"), default="independent",
                   help="a snapshot's recreation cost: sum (independent) or max (parallel) over its tensors")
    p.add_argument("--budget", metavar="BYTES",
                   help="instead of --alpha: the smallest alpha whose plan fits in BYTES (e.g. 800K, 2M)")
    p.add_argument("--keep-latest-whole", action="store_true",
                   help="store every version's last snapshot whole (alpha 1 for it): fastest checkout")
    p.add_argument("--dry-run", action="store_true",
                   help="only show storage versus recreation cost for alpha 1, 1.25, 1.5, 2, 4 and --alpha")
    p.add_argument("--remeasure", action="store_true",
                   help="encode every candidate again to size it, instead of reusing the sizes earlier "
                        "archives and dry runs measured")


def run(args, ui) -> int:
    repo = repo_of(args)
    budget = parse_size(args.budget) if args.budget else None
    progress = ui.progress_messages()
    if args.dry_run:
        alphas = sorted({1.0, 1.25, 1.5, 2.0, 4.0, args.alpha})
        rows = repo.archive_dry_run(alphas, scheme=args.scheme, keep_latest_whole=args.keep_latest_whole,
                                    progress=progress, remeasure=args.remeasure)
        if ui.json_mode:
            ui.json({"scheme": args.scheme, "plans": rows})
        else:
            ui.table(["alpha", "plan", "storage", "ratio", "recreation, all snapshots", "recreation, latest",
                      "worst / all-whole"],
                     [(f"{r['alpha']:g}", r["algorithm"], human_bytes(r["plan_storage_bytes"]),
                       "-" if r["ratio"] is None else f"{r['ratio']:.2f}x", human_bytes(r["total_recreation_cost"]),
                       human_bytes(r["latest_recreation_cost"]), f"{r['max_recreation_over_spt']:.2f}x") for r in rows],
                     align_right=(2, 3, 4, 5, 6))
            ui.print("recreation: bytes read + bytes decoded to rebuild the snapshots (the planner's cost); "
                     "ratio: raw tensor bytes / plan storage")
        return 0
    r = repo.archive(alpha=args.alpha, scheme=args.scheme, budget=budget,
                     keep_latest_whole=args.keep_latest_whole, progress=progress, remeasure=args.remeasure)
    if ui.json_mode:
        ui.json(r.to_dict())
        return 0
    if r.budget is None:
        plan = f"{r.algorithm} (alpha {r.alpha:g}, {r.scheme})"
    elif r.alpha == 1:
        plan = (f"{r.algorithm}: every tensor stored whole, the fastest recreation, already fits the "
                f"{human_bytes(r.budget)} budget ({r.scheme}); a smaller --budget trades recreation time for space")
    else:
        plan = (f"{r.algorithm} (alpha {r.alpha:g}: the smallest alpha whose plan fits the "
                f"{human_bytes(r.budget)} budget, {r.scheme})")
    ui.kv([
        ("plan", plan),
        ("tensors", f"{r.n_tensors} ({r.n_reencoded} re-encoded, {r.n_edges} candidate edges)"),
        ("measured", f"{r.n_measured} encodings" + (f" ({r.n_known} sized by an earlier archive)" if r.n_known else "")),
        ("stored", f"{human_bytes(r.stored_before)} -> {human_bytes(r.stored_after)}"),
        ("bounds", f"min storage {human_bytes(r.mst_bytes)}, all whole {human_bytes(r.spt_bytes)}"),
    ])
    worst = max((s.recreation_cost / s.spt_cost for s in r.snapshots if s.spt_cost), default=1.0)
    total = sum(s.recreation_cost for s in r.snapshots)
    ui.print(f"recreation cost: {human_bytes(int(total))} read + decoded for all snapshots; the worst snapshot "
             f"costs {worst:.2f}x its all-whole cost")
    if r.n_reencoded:
        ui.print("the replaced blobs stay on disk until `dlv gc` (after its grace period; `dlv gc --now` "
                 "when no other dlv process runs)")
    return 0
