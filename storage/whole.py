"""Manifest format 1 (codec ``zstd-whole``): one zstd frame per tensor, read forever."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import zstandard

from .codecs import register_codec
from .errors import CorruptBlobError
from .objects import content_hash

CODEC_ID = "zstd-whole"


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

    id: ClassVar[str] = CODEC_ID
    config_type: ClassVar[type] = ZstdWholeConfig

    def encode(self, raw, dtype, shape, config: ZstdWholeConfig, *, base_raw=None, base_hash=None, scratch=None):
        blob = zstandard.ZstdCompressor(level=config.level).compress(raw)
        return ({"format": 1, "codec": self.id, "level": config.level, "segments": [content_hash(blob)]},
                (blob,))

    def decode(self, manifest, fetch, nbytes, *, base=None, out=None):
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


register_codec(ZstdWholeCodec())
