"""Storage errors are translated at one boundary (modelhub/storage_boundary.py): a StorageError raised
deep inside storage/ during any command is a one-line modelhub error with its exit code, never a
traceback, and no other module can reach storage's failing entry points around the boundary."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import modelhub
from helpers import tiny_cnn
from modelhub.errors import ArchiveError, DiskFullError, IntegrityError
from modelhub.storage import errors as S
from modelhub.storage.tensors import SMALL_TENSOR_BYTES
from modelhub.storage_boundary import (BlobStore, CorruptObjectError, MissingObjectError, decode_tensor,
                                       translate)

BLOB = "ab" * 32


def _weights(path: Path, seed: int) -> str:
    """Seed 0: a network; seed 1: it fine-tuned (each weight nudged by ~1e-4 of itself), so that
    `dlv archive` finds deltas worth writing (a commit's own encoding of independent weights is
    already within the archive's rewrite threshold); other seeds: independent networks. One tensor
    is above SMALL_TENSOR_BYTES, so that a commit writes segments (the failures injected below)."""
    state = tiny_cnn(0 if seed == 1 else seed).state_dict()
    state["head.wide"] = torch.randn(32, 64, generator=torch.Generator().manual_seed(0 if seed == 1 else seed))
    assert state["head.wide"].numel() * 4 >= SMALL_TENSOR_BYTES
    if seed == 1:
        gen = torch.Generator().manual_seed(1)
        state = {k: v * (1 + 1e-4 * torch.randn(v.shape, generator=gen)) for k, v in state.items()}
    save_file(state, str(path))
    return str(path)


def _raiser(error: Exception):
    def fail(*_a, **_k):
        raise error
    return fail


# (what the command does, storage function that fails deep inside, the error it raises, exit code)
CASES = [
    ("commit", "modelhub.storage.segmented.encode_segmented", S.CodecError("injected codec failure"), 8),
    ("commit", "modelhub.storage.objects.write_temp", S.StorageFullError("objects/ab/cd"), 74),
    ("checkout", "modelhub.storage.segmented._decompress", S.CorruptBlobError(BLOB, "injected"), 65),
    ("checkout", "modelhub.storage.segmented._decompress", S.MissingBlobError(BLOB), 65),
    ("checkout", "modelhub.storage.segmented.segment_codings", S.DamagedEncodingError("injected damage"), 8),
    ("archive", "modelhub.storage.segmented.encode_segmented", S.UnknownFormatError("injected format"), 8),
    ("archive", "modelhub.storage.objects.write_temp", S.StorageFullError("objects/ab/cd"), 74),
    ("archive", "modelhub.storage.segmented.decode_segmented", S.CorruptBlobError(BLOB, "injected"), 65),
]


@pytest.mark.parametrize("command,target,error,code", CASES,
                         ids=[f"{c}-{t.rsplit('.', 1)[1]}-{type(e).__name__}" for c, t, e, _ in CASES])
def test_a_storage_error_deep_inside_a_command_is_one_line_with_its_exit_code(
        repo, cli, monkeypatch, tmp_path, command, target, error, code) -> None:
    monkeypatch.setenv("DLV_HOT_COPIES", "0")   # checkout reads the archive, not a hot copy
    root = ["--repo", str(repo.root)]
    if command != "commit":
        for seed in (0, 1):
            assert cli("commit", *root, "-m", f"v{seed}", "--name", "m",
                       "--weights", _weights(tmp_path / f"w{seed}.safetensors", seed))[0] == 0
    argv = {
        "commit": ["commit", *root, "-m", "x", "--name", "m", "--weights", _weights(tmp_path / "w.safetensors", 5)],
        "checkout": ["checkout", *root, "m@1", "-o", str(tmp_path / "out.safetensors")],
        "archive": ["archive", *root, "--alpha", "4"],
    }[command]
    monkeypatch.setattr(target, _raiser(error))
    exit_code, out, err = cli(*argv)
    assert (exit_code, out) == (code, "")
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert str(error).split(";")[0] in err


def test_translation_keeps_the_kind_and_adds_how_to_fix() -> None:
    corrupt = translate(S.CorruptBlobError(BLOB, "checksum mismatch"))
    assert isinstance(corrupt, CorruptObjectError) and corrupt.blob_hash == BLOB
    assert str(corrupt) == (f"object {BLOB[:16]} is corrupt (checksum mismatch); run `dlv fsck` to list damaged "
                            "objects and restore them from a remote with `dlv pull`")
    missing = translate(S.MissingBlobError(BLOB))
    assert isinstance(missing, MissingObjectError) and isinstance(missing, IntegrityError)
    assert str(missing).endswith("is missing from the object store; run `dlv fsck` to list what is damaged")
    full = translate(S.StorageFullError("/x/objects/ab/cd"))
    assert isinstance(full, DiskFullError) and "(`dlv gc` removes unreferenced blobs)" in str(full)
    damaged = translate(S.DamagedEncodingError("byte-class counts exceed the element size"))
    assert type(damaged) is ArchiveError and str(damaged).endswith("the catalog entry is damaged — run `dlv fsck --deep` to list the versions it affects")
    assert "upgrade modelhub" in str(translate(S.UnknownFormatError("unknown tensor codec 'x'")))


def test_the_repository_store_and_codecs_raise_modelhub_errors(repo) -> None:
    assert isinstance(repo.store, BlobStore)
    with pytest.raises(MissingObjectError, match=f"object {BLOB[:16]} is missing"):
        repo.store.get(BLOB)
    with pytest.raises(CorruptObjectError, match="not a valid object name"):
        repo.store.path_of("../../etc/passwd")
    with pytest.raises(ArchiveError, match="unknown tensor codec 'nope'; upgrade modelhub"):
        decode_tensor({"codec": "nope"}, repo.store.get, 4)


def test_copy_of_a_version_whose_attached_file_is_gone_is_an_integrity_error(repo) -> None:
    repo.commit(tiny_cnn(0), name="m", message="a", files={"notes.txt": b"hello"})
    (blob,) = [h for h in repo.store if repo.store.get(h) == b"hello"]
    repo.store.delete(blob)
    with pytest.raises(MissingObjectError, match=f"object {blob[:16]} is missing"):
        repo.copy("m", "m2")


# --- structure: nothing reaches storage's failing entry points around the boundary ------------

#: storage names modelhub may use directly: they cannot raise a StorageError (pure computations,
#: directio's writes), or (atomic) a plain file write whose one StorageError, a full disk, is also an OSError that
#: cache writes ignore and that the CLI maps through the boundary's translate()
DIRECT_OK = {
    "plan": None,   # None: the whole module (pure graph computation, ValueError on bad input)
    "tensors": {"tensor_hash", "tensor_matches", "manifest_blobs", "delta_base", "delta_op", "DTYPE_SIZES", "commit_config",
                "archive_config", "DEFAULT_CODEC", "encoder_id"},
    "dtypes": {"DTYPE_SIZES"},
    "progressive": {"PROGRESSIVE_DTYPES"},
    "objects": {"content_hash", "HASH_NAME", "LEGACY_HASH_NAME", "NAME_LENGTHS", "is_object_name", "name_matches"},
    "segmented": {"SegmentedConfig"},
    "lossy": {"LossyConfig"},
    "atomic": {"atomic_write", "fsync_dir", "new_temp"},
    # plain file writes past the page cache: OSError only (a checkout's weights files)
    "directio": {"ALIGN", "DIRECT_MIN_BYTES", "BufferPool", "open_direct", "block_span", "pwrite_all"},
    # buffers for a commit's encoding temporaries: memory only, no I/O
    "scratch": {"EncodeScratch", "SCRATCH_KEEP_BYTES", "SCRATCH_MIN_BYTES"},
}
#: the boundary itself, and the CLI's backstop that hands any StorageError to it
BOUNDARY_FILES = {"storage_boundary.py", "cli/exitcodes.py"}


def _violations(path: Path, rel: str) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = ["modelhub"] + rel.split("/")[:-1]
    aliases: dict[str, str] = {}      # local name -> storage submodule
    found: list[str] = []

    def storage_part(module: str | None, level: int) -> list[str] | None:
        parts = (package[:len(package) - level + 1] if level else []) + (module.split(".") if module else [])
        return parts[2:] if parts[:2] == ["modelhub", "storage"] else None

    def check(sub: str, name: str) -> None:
        allowed = DIRECT_OK.get(sub, set())
        if allowed is not None and name not in allowed:
            found.append(f"{rel}: storage.{sub}.{name}")

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            sub = storage_part(node.module, node.level)
            if sub is None:
                continue
            for alias in node.names:
                if not sub:                       # from ..storage import tensors [as codec]
                    if alias.name not in DIRECT_OK:
                        found.append(f"{rel}: storage.{alias.name}")
                    aliases[alias.asname or alias.name] = alias.name
                else:
                    check(sub[0], alias.name)
        elif isinstance(node, ast.Import) and any(a.name.startswith("modelhub.storage") for a in node.names):
            found.append(f"{rel}: import {', '.join(a.name for a in node.names)}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            check(aliases[node.value.id], node.attr)
    return found


def test_only_the_boundary_reaches_storage_entry_points_that_can_fail() -> None:
    root = Path(modelhub.__file__).parent
    violations = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel not in BOUNDARY_FILES and not rel.startswith("storage/"):   # (installed: storage/ lies inside)
            violations += _violations(path, rel)
    assert violations == []


def test_the_structure_check_sees_a_way_around_the_boundary(tmp_path) -> None:
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("from ..storage import tensors as codec\nfrom ..storage.errors import StorageError\n"
                      "from ..storage.objects import ObjectStore\ncodec.decode_tensor({}, None, 0)\n")
    assert _violations(sneaky, "repo/sneaky.py") == [
        "repo/sneaky.py: storage.errors.StorageError", "repo/sneaky.py: storage.objects.ObjectStore",
        "repo/sneaky.py: storage.tensors.decode_tensor"]
