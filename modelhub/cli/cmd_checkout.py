from __future__ import annotations

from pathlib import Path

from ..sizes import parse_size
from .common import repo_of
from .ui import human_bytes

HELP = "write a version's weights (bit-exact) to a safetensors file or shards, and optionally its files"
DESCRIPTION = (
    "Write a version's weights, one tensor at a time (memory stays near a few tensors), to OUT.safetensors. "
    "A version committed from a sharded checkpoint is written back as the same shards plus "
    "model.safetensors.index.json into a folder; --max-shard-size shards any version."
)


def configure(p) -> None:
    p.add_argument("ref", metavar="REF")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="OUT.safetensors, or a folder for shards (default: NAME@N.safetensors, NAME@N/ when sharded)")
    p.add_argument("--snapshot", type=int, help="checkpoint index (default: the last)")
    p.add_argument("--max-shard-size", metavar="SIZE", help="write shards of at most SIZE (e.g. 5G) into a folder")
    p.add_argument("--files", metavar="DIR", help="also write the version's attached files under DIR")
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def run(args, ui) -> int:
    max_shard = parse_size(args.max_shard_size) if args.max_shard_size else None
    w = repo_of(args).write_checkout(args.ref, args.output, snapshot=args.snapshot, files_dir=args.files,
                                     overwrite=args.force, max_shard_bytes=max_shard, progress=ui.progress())
    if ui.json_mode:
        ui.json({"version": w.version.to_dict(), "snapshot": w.snapshot, "output": w.output, "bytes": w.bytes,
                 "files": list(w.files), "shards": list(w.weight_files) if w.sharded else []})
    else:
        shards = f", {len(w.weight_files) - 1} shards and {Path(w.weight_files[-1]).name}" if w.sharded else ""
        ui.print(f"wrote {w.output} ({human_bytes(w.bytes)}, {w.n_tensors} tensors{shards}) from {w.version.ref}"
                 + (f", snapshot {w.snapshot}" if args.snapshot is not None else ""))
        for rel in w.files:
            ui.print(f"wrote {Path(args.files) / rel}")
    return 0
