from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..sizes import parse_size
from ..storage.atomic import atomic_write
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
    repo = repo_of(args)
    max_shard = parse_size(args.max_shard_size) if args.max_shard_size else None
    files = repo.files(args.ref) if args.files else {}
    targets = [Path(args.files) / p for p in files]
    if not args.force:
        existing = [str(t) for t in targets if t.exists()]
        if existing:
            raise InputError(f"{existing[0]} exists; pass --force to overwrite or choose another path with --files")
    done = repo.checkout_to(args.ref, args.output, snapshot=args.snapshot, max_shard_bytes=max_shard, force=args.force)
    for rel, content in files.items():
        atomic_write(Path(args.files) / rel, content)
    if ui.json_mode:
        ui.json({"version": done.version.to_dict(), "snapshot": done.snapshot, "output": done.output,
                 "bytes": done.bytes, "files": sorted(files), "shards": list(done.files) if done.sharded else []})
    else:
        what = f", {len(done.files) - 1} shards and {Path(done.files[-1]).name}" if done.sharded else ""
        ui.print(f"wrote {done.output} ({human_bytes(done.bytes)}, {done.n_tensors} tensors{what}) "
                 f"from {done.version.ref}" + (f", snapshot {done.snapshot}" if args.snapshot is not None else ""))
        for rel in sorted(files):
            ui.print(f"wrote {Path(args.files) / rel}")
    return 0
