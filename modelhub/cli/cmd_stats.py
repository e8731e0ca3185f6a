from __future__ import annotations

from .common import repo_of
from .ui import human_bytes

HELP = "repository size: logical versus stored bytes, version counts"


def configure(p) -> None:
    p.add_argument("--versions", action="store_true", help="also list every version")


def run(args, ui) -> int:
    s = repo_of(args).stats()
    if ui.json_mode:
        ui.json(s.to_dict() | {"ratio": s.ratio, "footprint_bytes": s.footprint_bytes,
                               "ratio_with_hot_copies": s.ratio_with_hot_copies})
        return 0
    ui.kv([
        ("models", s.n_models),
        ("versions", s.n_versions),
        ("distinct tensors", s.n_tensors),
        ("logical bytes", f"{human_bytes(s.logical_bytes)} (every snapshot as a full copy)"),
        ("stored bytes", f"{human_bytes(s.stored_bytes)} in {s.n_objects} objects ({human_bytes(s.files_bytes)} files)"),
        ("ratio", f"{s.ratio:.2f}x (archive only)"),
        ("hot copies", f"{human_bytes(s.hot_bytes)} (latest versions uncompressed for fast checkout; a cache, "
                       "capped by `dlv config hotcopy.max_bytes`)" if s.hot_bytes else "none"),
        ("on disk", f"{human_bytes(s.footprint_bytes)} with hot copies, ratio {s.ratio_with_hot_copies:.2f}x"),
    ] + ([("reclaimable", f"{human_bytes(s.reclaimable_bytes)} of unreferenced blobs (`dlv gc` removes them)")]
         if s.reclaimable_bytes else []))
    if args.versions:
        ui.print()
        # recreation cost: bytes read from the archive plus bytes decoded, along every delta chain
        ui.table(["version", "logical", "recreation cost (bytes read + decoded)"],
                 [(v.ref, human_bytes(v.logical_bytes),
                   "-" if v.recreation_cost is None else human_bytes(int(v.recreation_cost))) for v in s.versions],
                 align_right=(1, 2))
    return 0
