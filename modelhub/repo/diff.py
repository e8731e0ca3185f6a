"""`dlv diff`: architecture, parameters, hyperparameters and metrics of two versions."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..netdef import Graph, Node
from .reads import hparams_of, latest_metrics, snapshot_entries, version_graph, version_info
from .records import LayerChange, TensorChange, ValueChange, VersionDiff
from .tensorstore import load_tensor, tensor_shape

if TYPE_CHECKING:  # weights are decoded only for tensors that changed: a metadata diff needs no torch
    import torch


def diff_versions(con, store, a_id: str, b_id: str, *, include_same: bool = False) -> VersionDiff:
    layers = _layer_changes(version_graph(con, a_id), version_graph(con, b_id))
    tensors = _tensor_changes(con, store, a_id, b_id)
    hparams = _value_changes(hparams_of(con, a_id), hparams_of(con, b_id))
    metrics = _value_changes(latest_metrics(con, a_id), latest_metrics(con, b_id))
    if not include_same:
        keep = lambda rows: tuple(r for r in rows if r.status not in ("same", "identical"))  # noqa: E731
        layers, tensors, hparams, metrics = keep(layers), keep(tensors), keep(hparams), keep(metrics)
    return VersionDiff(
        a=version_info(con, a_id), b=version_info(con, b_id),
        layers=tuple(layers), tensors=tuple(tensors), hparams=tuple(hparams), metrics=tuple(metrics),
    )


def describe_layer(node: Node) -> str:
    args = ", ".join(f"{k}={v}" for k, v in sorted(node.attrs.items()))
    return f"{node.op}({args})"


def _layer_changes(ga: Graph | None, gb: Graph | None) -> list[LayerChange]:
    la = {n.name: n for n in ga.layers} if ga else {}
    lb = {n.name: n for n in gb.layers} if gb else {}
    out = []
    for name in list(la) + [n for n in lb if n not in la]:
        a, b = la.get(name), lb.get(name)
        if a is None:
            out.append(LayerChange(name, "added", None, describe_layer(b)))
        elif b is None:
            out.append(LayerChange(name, "removed", describe_layer(a), None))
        else:
            da, db = describe_layer(a), describe_layer(b)
            out.append(LayerChange(name, "same" if da == db else "changed", da, db))
    return out


def _tensor_changes(con, store, a_id: str, b_id: str) -> list[TensorChange]:
    ea, eb = dict(snapshot_entries(con, a_id)), dict(snapshot_entries(con, b_id))
    out = []
    for name in list(ea) + [n for n in eb if n not in ea]:
        ha, hb = ea.get(name), eb.get(name)
        if ha is None or hb is None:
            th = hb or ha
            shape = tensor_shape(con, th)
            out.append(TensorChange(name, "added" if ha is None else "removed", None, None,
                                    None if ha is None else shape, shape if ha is None else None))
            continue
        if ha == hb:
            shape = tensor_shape(con, ha)
            out.append(TensorChange(name, "identical", 0.0, 0.0, shape, shape))
            continue
        from ..tensorio import raw_to_tensor

        ta = raw_to_tensor(*load_tensor(con, store, ha))
        tb = raw_to_tensor(*load_tensor(con, store, hb))
        out.append(compare_tensors(name, ta, tb))
    return out


def compare_tensors(name: str, ta: torch.Tensor, tb: torch.Tensor) -> TensorChange:
    sa, sb = tuple(ta.shape), tuple(tb.shape)
    if sa != sb:
        return TensorChange(name, "shape_changed", None, None, sa, sb)
    if ta.dtype != tb.dtype:
        return TensorChange(name, "dtype_changed", None, None, sa, sb)
    bits_a, bits_b = _bits(ta), _bits(tb)
    frac = float((bits_a != bits_b).float().mean()) if ta.numel() else 0.0
    rel = None
    if ta.is_floating_point():
        import torch

        a64, b64 = ta.double(), tb.double()
        norm = float(torch.linalg.vector_norm(a64))
        delta = float(torch.linalg.vector_norm(b64 - a64))
        rel = delta / norm if norm > 0 else (0.0 if delta == 0 else math.inf)
    return TensorChange(name, "changed" if frac > 0 else "identical", rel, frac, sa, sb)


def _bits(t: torch.Tensor) -> torch.Tensor:
    import torch

    size = t.element_size()
    view = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}.get(size)
    flat = t.reshape(-1)
    return flat.view(view) if view is not None else flat


def _value_changes(a: dict, b: dict) -> list[ValueChange]:
    out = []
    for key in sorted(set(a) | set(b)):
        if key not in a:
            out.append(ValueChange(key, "added", None, b[key]))
        elif key not in b:
            out.append(ValueChange(key, "removed", a[key], None))
        else:
            same = a[key] == b[key] or (isinstance(a[key], float) and isinstance(b[key], float)
                                        and math.isnan(a[key]) and math.isnan(b[key]))
            out.append(ValueChange(key, "same" if same else "changed", a[key], b[key]))
    return out
