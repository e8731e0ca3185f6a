"""Tensor encoding contract between a caller (modelhub's repository) and the archive.

The caller hands raw little-endian tensor bytes plus (dtype, shape) to
:func:`encode_tensor`, writes the returned blobs to the object store, and
records the returned JSON manifest (modelhub: ``tensor_data.encoding`` in its
catalog). :func:`decode_tensor` turns a manifest back into the exact bytes.

Manifest format 1 (whole tensor, one zstd frame) is the foundation's
encoding; the parameter archive adds segmented / delta manifests with a
different ``codec`` value, keeping format-1 manifests readable forever.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from .codecs import CODECS, codec_of_config, get_codec
from .dtypes import DTYPE_SIZES
from .errors import CodecError
from .objects import HASH_NAME, LEGACY_HASH_NAME, blake2b_hex, blake3_hex, content_hash, digest_as
from .scratch import EncodeScratch
# The built-in codecs register themselves into the registry when imported (format 1, then 2).
from .whole import ZstdWholeConfig  # registers format 1: read forever
from . import context_coding
from .segmented import SegmentedConfig, encode_segmented

__all__ = ["DTYPE_SIZES", "DEFAULT_CODEC", "EncodedTensor", "TENSOR_HASHES", "tensor_hash", "tensor_matches", "check_size", "commit_config", "archive_config",
           "encode_tensor", "encode_delta_best", "ENCODER_REVISION", "encoder_id", "decode_tensor", "manifest_blobs", "delta_base", "delta_op", "config_codec"]


#: the hashes a tensor id can be made with: BLAKE3 (80 hex digits, the default) or BLAKE2b-256
#: (64, the ids of every tensor stored before BLAKE3; a repository created then keeps making
#: them, so that a tensor committed again still finds its stored twin)
TENSOR_HASHES = (HASH_NAME, LEGACY_HASH_NAME)


def tensor_hash(raw: bytes | memoryview, dtype: str, shape: Sequence[int], *, hash_name: str = HASH_NAME) -> str:
    """Identity of a tensor's content: equal hashes <=> equal dtype, shape and bits."""
    header = json.dumps([dtype, list(shape)]).encode()
    if hash_name == HASH_NAME:
        return blake3_hex(header, raw)
    if hash_name == LEGACY_HASH_NAME:
        return blake2b_hex(header, raw)
    raise CodecError(f"unknown tensor hash {hash_name!r}; use one of {list(TENSOR_HASHES)}")


def tensor_matches(tensor_id: str, raw: bytes | memoryview, dtype: str, shape: Sequence[int]) -> bool:
    """True when ``raw`` is the content ``tensor_id`` names, whichever hash made the id."""
    return digest_as(tensor_id, json.dumps([dtype, list(shape)]).encode(), raw) == tensor_id


def check_size(raw_len: int, dtype: str, shape: Sequence[int]) -> None:
    if dtype not in DTYPE_SIZES:
        raise CodecError(f"unsupported tensor dtype {dtype!r}; convert it to one of {sorted(DTYPE_SIZES)}")
    n = 1
    for d in shape:
        n *= int(d)
    if n * DTYPE_SIZES[dtype] != raw_len:
        raise CodecError(f"tensor bytes ({raw_len}) do not match dtype {dtype} and shape {list(shape)}")


@dataclass(frozen=True)
class EncodedTensor:
    manifest: dict            # JSON-serializable; stored in the catalog
    blobs: tuple[bytes | memoryview, ...]  # to be written to the object store; manifest names them by hash

    def named_blobs(self) -> list[tuple[str, bytes]]:
        """(content hash, bytes) of each blob: the names the codec computed for the manifest
        (every codec's ``blobs(manifest)`` lists them in the order ``encode`` returns the
        blobs), so a writer need not hash them again."""
        names = manifest_blobs(self.manifest)
        if len(names) != len(self.blobs):
            return [(content_hash(b), b) for b in self.blobs]
        return list(zip(names, self.blobs))


#: codec used when encode_tensor is called without codec= (new commits): the
#: parameter archive's segmented encoding, stored whole; re-encoding by a
#: storage plan later turns tensors into deltas where the plan says so
DEFAULT_CODEC = "segmented"


#: vectors (biases, norm scales and statistics; scalars too) below this many bytes are committed as one
#: zstd frame (format 1) instead of split into field segments, one blob each: they are most of a
#: network's tensors and little of its bytes, and every blob is a file to write, fsync and rename (and
#: at least one 4 KB block of disk). Matrices and kernels stay segmented whatever their size: they
#: are what progressive reads narrow down. EfficientNet-Lite0 (float32): 161 of its 247 tensors are
#: such vectors (1.2% of its bytes); committed as one frame each, its commit writes 576 blobs instead
#: of 1,158, runs ~1.5x faster and takes 13.6 MB of disk instead of 16.0 for 0.12% more blob bytes
#: (benchmarks/streaming.py has the figures of the whole commit). `dlv archive` keeps them whole too
#: (:func:`archive_config`): its first archive of that commit re-encodes 6 tensors, not 22, and leaves
#: 576 blob files, not 1,163.
SMALL_TENSOR_BYTES = 4096


def commit_config(nbytes: int | None = None, ndim: int | None = None) -> SegmentedConfig | ZstdWholeConfig:
    """The encoding of a new commit's tensor of ``nbytes`` bytes and ``ndim`` dimensions: one zstd
    frame for a vector below :data:`SMALL_TENSOR_BYTES`, else segmented, zstd level 1 per segment.

    Measured on a 12 MB float32 tensor: 240 MB/s at 1.19x versus 25 MB/s at
    1.20x for the archive's tuned optimal parse. Commits are interactive, so
    they take the fast path; re-encoding by a storage plan (modelhub's
    archive) re-encodes every tensor whose manifest differs from its planned
    (tuned) encoding by enough to pay for the rewrite, so little is lost.
    """
    if nbytes is not None and ndim is not None and _small_vector(nbytes, ndim):
        return ZstdWholeConfig(level=3)
    return SegmentedConfig(strategy="level", level=1)


def archive_config(nbytes: int, ndim: int) -> SegmentedConfig | ZstdWholeConfig:
    """The whole (non-delta) encoding a storage plan (modelhub's archive) sizes for a tensor: a small
    vector stays one zstd frame, as commits store it (at zstd's effort 19: the archive is not
    interactive), so that an archive does not split it into segments again; else segmented, tuned."""
    if _small_vector(nbytes, ndim):
        return ZstdWholeConfig(level=19)
    return SegmentedConfig(level=3)


def _small_vector(nbytes: int, ndim: int) -> bool:
    return ndim <= 1 and nbytes < SMALL_TENSOR_BYTES


def encode_tensor(raw: bytes, dtype: str, shape: Sequence[int], *, level: int = 3,
                  codec: str | None = None, config=None,
                  base_raw: bytes | memoryview | None = None, base_hash: str | None = None,
                  scratch: EncodeScratch | None = None) -> EncodedTensor:
    """Encode one tensor; the manifest names every blob by hash.

    ``codec``: "zstd-whole" (format 1) or "segmented" (format 2, the parameter
    archive); ``config`` is that codec's frozen config (default: its defaults
    with ``level``). With ``base_raw``/``base_hash`` the segmented codec may
    store a lossless delta against that tensor (it keeps the smaller encoding). ``scratch``
    (scratch.py): buffers for the temporaries; the blobs may then be views of them, so the
    caller writes them before ``scratch.release()``.
    """
    check_size(len(raw), dtype, shape)
    impl = get_codec(codec or (config_codec(config) if config is not None else DEFAULT_CODEC))
    if config is None:
        config = impl.config_type(level=level)
    elif not isinstance(config, impl.config_type):
        raise CodecError(f"codec {impl.id!r} takes a {impl.config_type.__name__}, not {type(config).__name__}")
    if base_raw is not None:
        check_size(len(base_raw), dtype, shape)
    manifest, blobs = impl.encode(raw, dtype, shape, config, base_raw=base_raw, base_hash=base_hash, scratch=scratch)
    return EncodedTensor(manifest=manifest, blobs=blobs)


#: the segmented options are compressed only where the best one's order-0 estimate is below this
#: share of the context-coded delta's size (see encode_delta_best)
_SEGMENTED_ESTIMATE_SLACK = 1.0


def encode_delta_best(raw: bytes, dtype: str, shape: Sequence[int], *, base_raw: bytes | memoryview,
                      base_hash: str, config: SegmentedConfig | None = None) -> EncodedTensor:
    """The smaller of the segmented encoding (whole or delta, its own choice) and the context-coded
    delta (format 3) of a float tensor against ``base_raw``.

    Used where the archive sizes and writes delta edges; commits store tensors whole and never
    reach it. The context coder only applies to float deltas of enough elements; it wins where
    a delta's magnitude follows the parent's exponent (docs/CONTEXT_CODER.md has the figures).

    The context coder runs first; the segmented codec then compresses its options (zstd's optimal
    parser on every plane, ~3 MB/s of tensor) only where the best one's order-0 estimate is below
    the context-coded size: its frames go below that estimate only through zstd's matches. On the
    trajectories of benchmarks/archive_context.py the segmented delta was smaller for 18 of the
    fine-tune's 102 context-coded tensors (by 23 KB of 40.3 MB) and 7 of the from-scratch CNN's 30;
    with this rule 83 and 20 are not compressed, 97% of that time, for 10.7 KB (0.026%) and 0 bytes.
    On the bfloat16 fine-tune the segmented delta lost every time. Where a delta is mostly zero runs
    (a few rows changed) the estimate overshoots the frames by up to 2x, but the context coder,
    whose streams get the same matches, was smaller still in every case measured.
    """
    check_size(len(raw), dtype, shape)
    check_size(len(base_raw), dtype, shape)
    ctx = None
    if dtype in context_coding.ITEMSIZES:
        ctx = context_coding.encode_context(raw, dtype, shape, base_raw=base_raw, base_hash=base_hash)
    itemsize = DTYPE_SIZES[dtype]
    seg = encode_segmented(raw, dtype, len(raw) // itemsize if itemsize else 0, itemsize,
                           config=config or SegmentedConfig(), base_raw=base_raw, base_hash=base_hash,
                           give_up_above=None if ctx is None else ctx.nbytes * _SEGMENTED_ESTIMATE_SLACK)
    if ctx is not None and (seg is None or ctx.nbytes < sum(len(b) for b in seg.blobs)):
        return EncodedTensor(manifest=ctx.manifest, blobs=tuple(ctx.blobs))
    assert seg is not None
    return EncodedTensor(manifest=seg.manifest, blobs=seg.blobs)


#: bumped whenever :func:`archive_config`'s or :func:`encode_delta_best`'s output can change size
#: (a codec's choices, a new coding, a threshold): modelhub's archive caches the sizes it measured
#: under :func:`encoder_id` and measures again under a new one. tests/test_encoder_revision.py
#: keeps sizes of fixed encodings per revision and fails where they change under the same one.
ENCODER_REVISION = 1


def encoder_id() -> str:
    """What the sizes of :func:`archive_config` and :func:`encode_delta_best` encodings depend on
    besides the tensors: this module's revision and the zstd library that makes the frames."""
    import zstandard
    return f"r{ENCODER_REVISION} zstd {'.'.join(map(str, zstandard.ZSTD_VERSION))}"


def config_codec(config) -> str:
    """The id of the codec that takes ``config``."""
    return codec_of_config(config).id


def manifest_blobs(manifest: Mapping) -> list[str]:
    """Every object hash a manifest references (what a garbage collector, a checker or a copier must keep)."""
    codec = CODECS.get(manifest.get("codec"))
    if codec is None:  # unknown codec: best effort, never drop referenced blobs silently
        return list(manifest.get("segments", []))
    return codec.blobs(manifest)


def delta_base(manifest: Mapping) -> str | None:
    """tensor_hash of the tensor this manifest is a delta against (None: stored whole)."""
    delta = manifest.get("delta")
    return delta["base"] if delta else None


def delta_op(manifest: Mapping) -> str | None:
    delta = manifest.get("delta")
    return delta["op"] if delta else None


def decode_tensor(manifest: Mapping, fetch: Callable[[str], bytes], nbytes: int, *,
                  base: Callable[[str], bytes] | None = None,
                  out: bytearray | memoryview | None = None) -> bytes | bytearray | memoryview:
    """The exact raw bytes of a tensor (``bytes``, or a ``bytearray`` the decoder wrote in place).

    ``fetch`` maps a blob hash to its (verified) bytes; ``base`` maps a
    tensor_hash to that tensor's decoded raw bytes and is needed only for
    delta manifests (see :func:`delta_base`). ``out``: a writable buffer of
    ``nbytes`` bytes that receives them instead (returned, as a byte
    memoryview): a checkout decodes straight into the buffer it writes out.
    """
    codec = get_codec(manifest.get("codec"))
    if out is None:
        return codec.decode(manifest, fetch, nbytes, base=base)
    target = memoryview(out).cast("B")
    if target.readonly or target.nbytes != nbytes:
        raise CodecError(f"decode_tensor: out must be {nbytes} writable bytes, not {target.nbytes}"
                         f"{' read-only' if target.readonly else ''} bytes")
    raw = codec.decode(manifest, fetch, nbytes, base=base, out=target)
    if raw is not target:   # a codec that cannot decode in place: its own buffer, copied
        target[:] = raw
    return target
