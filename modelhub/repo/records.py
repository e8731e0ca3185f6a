"""Result dataclasses of repository operations (the API returns these, never prints)."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..netdef import Graph

if TYPE_CHECKING:  # annotations only: reading the catalog must not import torch
    import torch
    from torch import nn


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class Record:
    def to_dict(self) -> dict:
        return _jsonable(asdict(self))  # type: ignore[arg-type]


@dataclass(frozen=True)
class VersionInfo(Record):
    id: str
    model: str
    seq: int
    message: str
    author: str
    created_at: datetime
    parents: tuple[str, ...]
    n_params: int
    n_tensors: int
    logical_bytes: int
    #: finished or failed when the version was committed from a run (repo.run), else None
    run_status: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.model}@{self.seq}"

    def to_dict(self) -> dict:
        return super().to_dict() | {"ref": self.ref}

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass(frozen=True)
class ModelSummary(Record):
    name: str
    n_versions: int
    latest_id: str
    latest_seq: int
    created_at: datetime
    updated_at: datetime
    derived_from: tuple[str, ...]   # versions of other models the first version descends from


@dataclass(frozen=True)
class LayerInfo(Record):
    name: str
    op: str
    attrs: dict
    n_params: int


@dataclass(frozen=True)
class TensorInfo(Record):
    name: str
    dtype: str
    shape: tuple[int, ...]
    numel: int
    tensor_hash: str


@dataclass(frozen=True)
class FileInfo(Record):
    path: str
    size: int
    blob_hash: str


@dataclass(frozen=True)
class MetricSummary(Record):
    name: str
    last_step: int
    last: float
    min: float
    max: float
    n_points: int


@dataclass(frozen=True)
class VersionDescription(Record):
    version: VersionInfo
    traced: bool | None            # None: no network definition stored
    rebuildable: bool | None
    layers: tuple[LayerInfo, ...]
    tensors: tuple[TensorInfo, ...]
    hparams: dict
    metrics: tuple[MetricSummary, ...]
    files: tuple[FileInfo, ...]
    children: tuple[str, ...]
    n_snapshots: int


@dataclass(frozen=True)
class LayerChange(Record):
    name: str
    status: str                    # added | removed | changed | same
    old: str | None                # 'Conv2d(kernel_size=[3, 3], ...)'
    new: str | None


@dataclass(frozen=True)
class TensorChange(Record):
    name: str
    status: str                    # identical | changed | shape_changed | dtype_changed | added | removed
    rel_l2: float | None           # ||b - a|| / ||a|| (None where undefined)
    frac_changed: float | None     # fraction of values whose bit patterns differ
    old_shape: tuple[int, ...] | None
    new_shape: tuple[int, ...] | None


@dataclass(frozen=True)
class ValueChange(Record):
    key: str
    status: str                    # added | removed | changed | same
    old: Any
    new: Any


@dataclass(frozen=True)
class VersionDiff(Record):
    a: VersionInfo
    b: VersionInfo
    layers: tuple[LayerChange, ...]
    tensors: tuple[TensorChange, ...]
    hparams: tuple[ValueChange, ...]
    metrics: tuple[ValueChange, ...]

    @property
    def identical(self) -> bool:
        rows = (*self.layers, *self.tensors, *self.hparams, *self.metrics)
        return all(r.status in ("same", "identical") for r in rows)


@dataclass(frozen=True)
class Checkout:
    version: VersionInfo
    state_dict: "OrderedDict[str, torch.Tensor]"
    module: nn.Module | None       # rebuilt from the graph, or the user's class with weights loaded
    graph: Graph | None
    hparams: dict
    weights_meta: dict | None      # safetensors __metadata__ of the committed file
    snapshot: int


@dataclass(frozen=True)
class VersionStats(Record):
    id: str
    ref: str
    logical_bytes: int
    recreation_cost: float | None  # filled by the archive's storage plan


@dataclass(frozen=True)
class RepoStats(Record):
    n_models: int
    n_versions: int
    n_tensors: int                 # distinct tensors stored
    n_objects: int
    logical_bytes: int             # sum over versions (all snapshots) of raw tensor bytes
    stored_bytes: int              # bytes of the blobs versions reference
    files_bytes: int
    versions: tuple[VersionStats, ...] = field(default_factory=tuple)
    reclaimable_bytes: int = 0     # unreferenced blobs still on disk (`dlv gc` removes them)
    hot_bytes: int = 0             # uncompressed hot copies of latest versions (a cache; see hotcopy.py)

    @property
    def ratio(self) -> float:
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else float("inf")

    @property
    def footprint_bytes(self) -> int:
        """What the repository's weights take on disk: the archive plus the hot copies."""
        return self.stored_bytes + self.hot_bytes

    @property
    def ratio_with_hot_copies(self) -> float:
        return self.logical_bytes / self.footprint_bytes if self.footprint_bytes else float("inf")
