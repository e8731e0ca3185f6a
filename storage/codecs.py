"""The codec contract and registry.

A codec has an ``id`` (the manifest's ``codec`` value), a frozen-dataclass
config with a JSON form, ``encode`` (raw little-endian bytes + dtype + shape,
optionally a delta base) and ``decode`` (manifest + blob fetcher + optional
base resolver -> the exact bytes). :mod:`storage.tensors` dispatches on the
manifest's ``codec`` through :data:`CODECS`, so old manifests stay readable
as long as their codec stays registered.

This module holds only the contract and the registry and imports no codec:
each codec module registers itself into :data:`CODECS` when imported
(:mod:`.whole`, :mod:`.segmented`), and :mod:`.tensors` imports the built-in
ones. Codecs therefore depend on the registry, never the other way round.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping, Optional, Protocol, Sequence

from .errors import CodecError, UnknownFormatError

Fetch = Callable[[str], bytes]
BaseResolver = Callable[[str], bytes]


class Codec(Protocol):
    id: ClassVar[str]
    config_type: ClassVar[type]

    def encode(self, raw: bytes, dtype: str, shape: Sequence[int], config: Any, *,
               base_raw: bytes | None = None, base_hash: str | None = None,
               scratch: Any = None) -> tuple[dict, tuple[bytes, ...]]:
        """(manifest, blobs). ``scratch`` (an ``EncodeScratch``, scratch.py) is where a codec may
        put its temporaries; its blobs may then be views of them, valid until ``scratch.release()``.
        A codec may ignore it."""
        ...

    def decode(self, manifest: Mapping, fetch: Fetch, nbytes: int, *,
               base: Optional[BaseResolver] = None, out: Optional[memoryview] = None) -> bytes | memoryview:
        """The tensor's raw bytes. ``out`` (``nbytes`` writable bytes) is where the caller wants
        them: a codec that can decode in place writes them there and returns ``out`` itself;
        one that cannot ignores it (``decode_tensor`` then copies)."""
        ...

    def blobs(self, manifest: Mapping) -> list[str]: ...


CODECS: dict[str, Codec] = {}


def register_codec(codec: Codec) -> None:
    if codec.id in CODECS:
        raise CodecError(f"codec {codec.id!r} is already registered; give the new codec another id")
    CODECS[codec.id] = codec


def get_codec(codec_id: Any) -> Codec:
    try:
        return CODECS[codec_id]
    except (KeyError, TypeError):
        raise UnknownFormatError(f"unknown tensor codec {codec_id!r}") from None


def codec_of_config(config: Any) -> Codec:
    """The registered codec whose config type ``config`` is."""
    for codec in CODECS.values():
        if isinstance(config, codec.config_type):
            return codec
    raise CodecError(f"no codec takes a {type(config).__name__} config; pass codec= explicitly")
