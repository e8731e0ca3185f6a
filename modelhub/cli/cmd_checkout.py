from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..storage.atomic import atomic_write
from ..tensorio import safetensors_bytes
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
    repo = repo_of(args)
    ck = repo.checkout(args.ref, snapshot=args.snapshot, rebuild_module=False)
    out = Path(args.output or f"{ck.version.model}@{ck.version.seq}.safetensors")
    if out.suffix != ".safetensors":
        raise InputError(f"{out}: checkout writes safetensors; give a path ending in .safetensors")
    targets = [out]
    files = repo.files(args.ref) if args.files else {}
    targets += [Path(args.files) / p for p in files]
    if not args.force:
        existing = [str(t) for t in targets if t.exists()]
        if existing:
            raise InputError(f"{existing[0]} exists; pass --force to overwrite or choose another path with -o")
    data = safetensors_bytes(ck.state_dict, ck.weights_meta)
    atomic_write(out, data)
    for rel, content in files.items():
        atomic_write(Path(args.files) / rel, content)
    if ui.json_mode:
        ui.json({"version": ck.version.to_dict(), "snapshot": ck.snapshot, "output": str(out), "bytes": len(data),
                 "files": sorted(files)})
    else:
        ui.print(f"wrote {out} ({human_bytes(len(data))}, {len(ck.state_dict)} tensors) from {ck.version.ref}"
                 + (f", snapshot {ck.snapshot}" if args.snapshot is not None else ""))
        for rel in sorted(files):
            ui.print(f"wrote {Path(args.files) / rel}")
    return 0
