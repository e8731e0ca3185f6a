"""Tensors in and out: raw bytes for the archive, safetensors/.pt files for users.

Nothing here unpickles code: ``.pt`` files go through
``torch.load(weights_only=True)`` and a file that needs more is refused.
"""
from __future__ import annotations

import io
import json
import os
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load_bytes
from safetensors.torch import save as st_save_bytes

from .errors import WeightsError
from .storage.atomic import atomic_write


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def tensor_view(t: torch.Tensor) -> memoryview:
    """The raw little-endian bytes of a tensor (any dtype, incl. bfloat16), without copying a CPU tensor."""
    t = t.detach().to("cpu").contiguous()
    return memoryview(t.reshape(-1).view(torch.uint8).numpy()) if t.numel() else memoryview(b"")


def tensor_to_raw(t: torch.Tensor) -> tuple[bytes, str, list[int]]:
    """Raw little-endian bytes of a tensor (any dtype, incl. bfloat16)."""
    return tensor_view(t).tobytes(), dtype_name(t.dtype), list(t.shape)


def raw_to_tensor(raw: bytes, dtype: str, shape: list[int]) -> torch.Tensor:
    torch_dtype = getattr(torch, dtype)
    if not raw:
        return torch.empty(shape, dtype=torch_dtype)
    flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    return flat.view(torch_dtype).reshape(shape)


def as_state_dict(obj: object, source: str) -> "OrderedDict[str, torch.Tensor]":
    """Accept a mapping of name -> tensor (or a checkpoint dict wrapping one)."""
    if isinstance(obj, Mapping):
        if obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
            return OrderedDict(obj)
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                return OrderedDict(inner)
    raise WeightsError(
        f"{source} does not hold a state dict (a mapping of names to tensors); save "
        "`model.state_dict()` with safetensors.torch.save_file or torch.save"
    )


def load_weights_file(path: str | os.PathLike) -> tuple["OrderedDict[str, torch.Tensor]", dict | None]:
    """Load ``.safetensors`` or ``.pt``/``.pth``/``.bin``; returns (tensors, safetensors metadata)."""
    p = Path(path)
    if p.is_dir():
        raise WeightsError(f"{p} is a folder with no .safetensors file and no model.safetensors.index.json; "
                           "point at the weights file or at a checkpoint's folder")
    if not p.is_file():
        raise WeightsError(f"weights file {p} does not exist; check the path")
    data = p.read_bytes()
    if p.suffix == ".safetensors":
        return _load_safetensors(data, p)
    if p.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        return _load_torch(data, p), None
    raise WeightsError(f"{p}: unknown weights format {p.suffix!r}; use a .safetensors or .pt file")


def _load_safetensors(data: bytes, p: Path) -> tuple["OrderedDict[str, torch.Tensor]", dict | None]:
    try:
        tensors = st_load_bytes(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
    except (SafetensorError, ValueError, json.JSONDecodeError, OverflowError, KeyError, TypeError, IndexError) as exc:
        raise WeightsError(
            f"{p} is not a valid safetensors file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
            "re-export it with safetensors.torch.save_file"
        ) from None
    # Keep the file's tensor order so a checkout writes the same bytes back.
    order = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    return OrderedDict((k, tensors[k]) for k in order), header.get("__metadata__")


#: how torch's weights-only unpickler words "this file names code" (it has changed
#: between releases: "Unsupported global: GLOBAL x", "unsupported GLOBAL x whose
#: module is blocked", refusals to call, build or instantiate a class)
_NEEDS_CODE = ("unsupported global", "trying to call reduce", "can only create new object", "can only build",
               "must be imported to load")


def _load_torch(data: bytes, p: Path) -> "OrderedDict[str, torch.Tensor]":
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if any(m in str(exc).lower() for m in _NEEDS_CODE):
            raise WeightsError(
                f"{p} needs pickled code to load and is refused (modelhub never runs code from "
                "weights files); re-save it as `torch.save(model.state_dict(), ...)` or as safetensors"
            ) from None
        raise WeightsError(f"{p} is corrupt (not a torch pickle stream); re-export the weights") from None
    except Exception as exc:  # noqa: BLE001 - weights_only=True runs no code, so any failure means "unreadable"
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise WeightsError(f"{p} is not a readable torch file ({first}); re-export the weights") from None
    return as_state_dict(obj, str(p))


def safetensors_bytes(tensors: Mapping[str, torch.Tensor], metadata: dict | None = None) -> bytes:
    return st_save_bytes({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)


def save_safetensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], metadata: dict | None = None) -> None:
    atomic_write(Path(path), safetensors_bytes(tensors, metadata))
