"""Write a version out as files (`dlv checkout`): its weights as safetensors, its attached files.

Each file is written atomically (temp -> fsync -> rename), so an interrupted
checkout never leaves a half-written file under the final name.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..errors import InputError
from ..storage.atomic import atomic_write
from ..tensorio import safetensors_bytes
from .records import Checkout, Record, VersionInfo


@dataclass(frozen=True)
class WrittenCheckout(Record):
    version: VersionInfo
    snapshot: int               # the snapshot written (the last one unless one was asked for)
    output: str                 # the safetensors file
    bytes: int                  # its size
    n_tensors: int
    files: tuple[str, ...]      # attached files written, relative to the files folder, sorted


def default_output(version: VersionInfo) -> Path:
    """NAME@N.safetensors in the current folder."""
    return Path(f"{version.model}@{version.seq}.safetensors")


def write_checkout(ck: Checkout, files: Mapping[str, bytes], output: Path, files_dir: Path | None, *,
                   overwrite: bool) -> WrittenCheckout:
    """Write ``ck``'s weights to ``output`` and ``files`` under ``files_dir``.

    Refuses (InputError) an output that is not a .safetensors path, and any
    existing target unless ``overwrite``, before writing anything.
    """
    if output.suffix != ".safetensors":
        raise InputError(f"{output}: checkout writes safetensors; give a path ending in .safetensors")
    targets = [output] + ([files_dir / rel for rel in files] if files_dir is not None else [])
    if not overwrite:
        existing = [str(t) for t in targets if t.exists()]
        if existing:
            raise InputError(f"{existing[0]} exists; pass --force to overwrite or choose another path with -o")
    data = safetensors_bytes(ck.state_dict, ck.weights_meta)
    atomic_write(output, data)
    if files_dir is not None:
        for rel, content in files.items():
            atomic_write(files_dir / rel, content)
    return WrittenCheckout(version=ck.version, snapshot=ck.snapshot, output=str(output), bytes=len(data),
                           n_tensors=len(ck.state_dict), files=tuple(sorted(files)))
