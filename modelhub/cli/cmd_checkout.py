from __future__ import annotations

from pathlib import Path

from .common import repo_of
from .ui import human_bytes

HELP = "write a version's weights (bit-exact) to a safetensors file, and optionally its files"


def configure(p) -> None:
    p.add_argument("ref", metavar="REF")
    p.add_argument("-o", "--output", metavar="OUT.safetensors", help="default: NAME@N.safetensors in the current folder")
    p.add_argument("--snapshot", type=int, help="checkpoint index (default: the last)")
    p.add_argument("--files", metavar="DIR", help="also write the version's attached files under DIR")
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def run(args, ui) -> int:
    w = repo_of(args).write_checkout(args.ref, args.output, snapshot=args.snapshot, files_dir=args.files,
                                     overwrite=args.force)
    if ui.json_mode:
        ui.json({"version": w.version.to_dict(), "snapshot": w.snapshot, "output": w.output, "bytes": w.bytes,
                 "files": list(w.files)})
    else:
        ui.print(f"wrote {w.output} ({human_bytes(w.bytes)}, {w.n_tensors} tensors) from {w.version.ref}"
                 + (f", snapshot {w.snapshot}" if args.snapshot is not None else ""))
        for rel in w.files:
            ui.print(f"wrote {Path(args.files) / rel}")
    return 0
