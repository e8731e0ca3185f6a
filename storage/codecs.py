"""The codec contract and registry.

A codec has an ``id`` (the manifest's ``codec`` value), a frozen-dataclass
config with a JSON form, ``encode`` (raw little-endian bytes + dtype + shape,
optionally a delta base) and ``decode`` (manifest + blob fetcher + optional
base resolver -> the exact bytes). :mod:`storage.tensors` dispatches on the
manifest's ``codec`` through :data:`CODECS`, so old manifests stay readable
as long as their codec stays registered.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping, Optional, Protocol, Sequence

import zstandard

from .errors import CodecError, CorruptBlobError
from .segmented import (CODEC_ID as SEGMENTED_ID, SegmentedConfig, decode_segmented,
                        encode_segmented, segmented_blobs)

Fetch = Callable[[str], bytes]
BaseResolver = Callable[[str], bytes]


class Codec(Protocol):
    id: ClassVar[str]
    config_type: ClassVar[type]

    def encode(self, raw: bytes, dtype: str, shape: Sequence[int], config: Any, *,
               base_raw: bytes | None = None, base_hash: str | None = None) -> tuple[dict, tuple[bytes, ...]]: ...

    def decode(self, manifest: Mapping, fetch: Fetch, nbytes: int, *,
               base: Optional[BaseResolver] = None) -> bytes: ...

    def blobs(self, manifest: Mapping) -> list[str]: ...


@dataclass(frozen=True)
class ZstdWholeConfig:
    level: int = 3

    def to_json(self) -> dict:
        return {"level": self.level}

    @staticmethod
    def from_json(obj: Mapping) -> "ZstdWholeConfig":
        return ZstdWholeConfig(level=int(obj.get("level", 3)))


class ZstdWholeCodec:
    """Format 1: the foundation's one zstd frame per tensor (read forever)."""

    id: ClassVar[str] = "zstd-whole"
    config_type: ClassVar[type] = ZstdWholeConfig

    def encode(self, raw, dtype, shape, config: ZstdWholeConfig, *, base_raw=None, base_hash=None):
        from .objects import content_hash

        blob = zstandard.ZstdCompressor(level=config.level).compress(raw)
        return ({"format": 1, "codec": self.id, "level": config.level, "segments": [content_hash(blob)]},
                (blob,))

    def decode(self, manifest, fetch, nbytes, *, base=None):
        (blob_hash,) = manifest["segments"]
        try:
            raw = zstandard.ZstdDecompressor().decompress(fetch(blob_hash), max_output_size=max(nbytes, 1))
        except zstandard.ZstdError as exc:
            raise CorruptBlobError(blob_hash, f"zstd: {exc}") from None
        if len(raw) != nbytes:
            raise CorruptBlobError(blob_hash, f"decoded {len(raw)} bytes, expected {nbytes}")
        return raw

    def blobs(self, manifest):
        return list(manifest.get("segments", []))


class SegmentedCodec:
    """Format 2: exponent-first bit-field segments, optional delta, zstd per segment."""

    id: ClassVar[str] = SEGMENTED_ID
    config_type: ClassVar[type] = SegmentedConfig

    def encode(self, raw, dtype, shape, config: SegmentedConfig, *, base_raw=None, base_hash=None):
        from .tensors import DTYPE_SIZES

        itemsize = DTYPE_SIZES[dtype]
        result = encode_segmented(raw, dtype, len(raw) // itemsize if itemsize else 0, itemsize,
                                  config=config, base_raw=base_raw, base_hash=base_hash)
        return result.manifest, result.blobs

    def decode(self, manifest, fetch, nbytes, *, base=None):
        return decode_segmented(manifest, fetch, nbytes, base=base)

    def blobs(self, manifest):
        return segmented_blobs(manifest)


CODECS: dict[str, Codec] = {}


def register_codec(codec: Codec) -> None:
    if codec.id in CODECS:
        raise CodecError(f"codec {codec.id!r} is already registered; give the new codec another id")
    CODECS[codec.id] = codec


def get_codec(codec_id: Any) -> Codec:
    try:
        return CODECS[codec_id]
    except (KeyError, TypeError):
        raise CodecError(f"unknown tensor codec {codec_id!r}; upgrade modelhub to read this repository") from None


register_codec(ZstdWholeCodec())
register_codec(SegmentedCodec())
