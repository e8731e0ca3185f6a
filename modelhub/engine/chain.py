"""Cut a network into a chain of stages, the unit of prefix reuse.

A stage maps what flows across one cut to what flows across the next, so the
output of any prefix of stages can be stored and fed to the rest.
``nn.Sequential`` networks (nested ones flattened) cut between children; any
other module is traced with torch.fx (graphs rebuilt by modelhub.netdef are
GraphModules already).

Where a traced network is cut depends on what is known about its values:
- with an example batch (what the engine passes), the network runs once on it
  and a cut may sit before or after any layer where every value still needed
  later is a per-record tensor: after a residual ``add``, between transformer
  layers (hidden states and attention mask), between the inputs of a
  multi-input network. Several values are carried packed into one float32 row
  per record (packing.py), bit-exactly;
- without one, a cut sits only after a layer that is the single value flowing
  on (the older rule; every such cut is also found with an example).

Stages keep the original parameter names, so per-layer learning rates still
address the user's layer names, and they share the network's parameters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import fx, nn

from .errors import SplitError
from .packing import Layout

#: Layers that behave differently in training mode. A parameter-free one ends the frozen
#: prefix unless it belongs to a frozen block (train.frozen_layers): training runs it in
#: training mode.
MODE_SENSITIVE = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase, nn.RReLU)


@dataclass(frozen=True, eq=False)
class Segment:
    """Where a traced stage sits in its network: body nodes (lo, hi] of ``graph_module``."""
    graph_module: fx.GraphModule
    lo: int                      # the cut it starts after (-1: the network's inputs)
    hi: int                      # the cut it ends at (last body index: the network's output)
    sources: tuple[fx.Node, ...]  # the values flowing in across cut ``lo``
    outs: tuple[fx.Node, ...]     # the values flowing out across cut ``hi``


@dataclass(frozen=True, eq=False)
class Stage:
    name: str               # for display only; reuse never depends on names
    module: nn.Module       # forward(x) -> y
    param_prefix: str       # prefix turning the module's parameter names into the network's
    segment: Segment | None = None    # traced stages: where they were cut (to join a suffix)
    packed_out: bool = False          # its output is several tensors packed (packing.py)

    @property
    def layers(self) -> nn.Module:
        """The module holding the stage's layers under the network's own names."""
        return self.module.body if isinstance(self.module, PackedStage) else self.module

    def named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(self.param_prefix + n, p) for n, p in self.layers.named_parameters()]

    def tensor_names(self) -> list[str]:
        """The network's names of every parameter and buffer the stage uses."""
        return [self.param_prefix + n for n in self.layers.state_dict()]


class PackedStage(nn.Module):
    """A traced segment whose input and/or output crosses a cut as several tensors."""

    def __init__(self, body: nn.Module, in_layout: Layout | None, out_layout: Layout | None) -> None:
        super().__init__()
        self.body = body
        self.in_layout = in_layout
        self.out_layout = out_layout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        args = self.in_layout.unpack(x) if self.in_layout is not None else (x,)
        y = self.body(*args)
        return self.out_layout.pack(y) if self.out_layout is not None else y

    def extra_repr(self) -> str:
        def show(layout: Layout | None) -> Any:
            return None if layout is None else layout.describe()
        return f"in={show(self.in_layout)}, out={show(self.out_layout)}"


try:    # generates a stage's Python code on its first call, not when it is cut
    from torch.fx._lazy_graph_module import _LazyGraphModule as _StageModule
except ImportError:     # a torch without it: code generated up front, as before
    _StageModule = fx.GraphModule
# Why lazily: every candidate is cut into stages (EfficientNet-Lite0: 144), code generation was
# two thirds of a cut, and most stages never run -- candidates share the prefix tree's nodes, so
# only one copy of a shared stage extracts, and joined stages are cut again.


def split_into_stages(model: nn.Module, example: Sequence[torch.Tensor] | None = None) -> list[Stage]:
    """``example``: a few records of every network input (see the module docstring)."""
    if isinstance(model, nn.Sequential):
        return _split_sequential(model, "")
    gm = model if isinstance(model, fx.GraphModule) else _trace(model)
    return _split_graph(gm, example)


def whole_network(model: nn.Module, layout: Layout | None) -> list[Stage]:
    """One stage for a network the engine cannot cut: it still trains and validates, with
    every layer recomputed each step (no prefix reuse)."""
    module = PackedStage(model, layout, None) if layout is not None else model  # type: ignore[arg-type]
    return [Stage(type(model).__name__, module, "")]


def _split_sequential(seq: nn.Sequential, path: str) -> list[Stage]:
    stages: list[Stage] = []
    for name, child in seq.named_children():
        full = f"{path}{name}"
        if isinstance(child, nn.Sequential):
            stages.extend(_split_sequential(child, full + "."))
        else:
            stages.append(Stage(full, child, full + "."))
    return stages


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types for untraceable code
        where = _untraceable_module(model)
        raise SplitError(
            f"cannot cut {type(model).__name__} into stages: torch.fx stops"
            f"{f' in {where}' if where else ''} ({type(exc).__name__}: {str(exc)[:80]}); "
            "it still trains and evaluates, but its frozen layers are recomputed every step: make that "
            "forward traceable by torch.fx (no Python branches on tensor values) to reuse them"
        ) from None


def _untraceable_module(model: nn.Module) -> str | None:
    """The deepest submodule that fx cannot trace on its own (None if only the top level fails)."""
    found = None
    for name, sub in model.named_modules():
        if not name or isinstance(sub, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            continue
        if type(sub).forward.__module__.startswith("torch.nn"):
            continue
        try:
            fx.symbolic_trace(sub)
        except Exception:  # noqa: BLE001 - any failure marks it
            found = f"{name} ({type(sub).__name__})"
    return found


class _Recorder(fx.Interpreter):
    """Runs the network once on the example and notes which values are per-record tensors."""

    def __init__(self, gm: fx.GraphModule, batch: int) -> None:
        super().__init__(gm)
        self.batch = batch
        self.per_record: dict[fx.Node, bool] = {}

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        # forward() directly: hooks a caller placed on layers see real batches only
        return self.fetch_attr(target).forward(*args, **kwargs)

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        self.per_record[n] = isinstance(out, torch.Tensor) and out.dim() >= 1 and out.shape[0] == self.batch
        if self.per_record[n]:
            n.meta["example_value"] = out[:1].detach()    # per-record shape and dtype, for packing
        return out


#: per-record analysis of a network: (generated code, example signature) -> node name ->
#: example value (None: not a per-record tensor). Candidates copy their network and several
#: versions share one architecture: the analysis runs once per architecture and input shape.
_ANALYSED: dict[tuple[str, str], dict[str, torch.Tensor | None]] = {}


def _per_record_values(gm: fx.GraphModule, example: Sequence[torch.Tensor]) -> dict[fx.Node, bool]:
    signature = repr([(tuple(t.shape), t.dtype) for t in example])
    known = _ANALYSED.get((gm.code, signature))
    if known is None:
        per_record = _analyse(gm, example)
        known = {n.name: (n.meta["example_value"] if ok else None) for n, ok in per_record.items()}
        if len(_ANALYSED) > 64:
            _ANALYSED.clear()
        _ANALYSED[(gm.code, signature)] = known
    out: dict[fx.Node, bool] = {}
    for n in gm.graph.nodes:
        value = known.get(n.name)
        out[n] = value is not None
        if value is not None:
            n.meta["example_value"] = value
    return out


def _analyse(gm: fx.GraphModule, example: Sequence[torch.Tensor]) -> dict[fx.Node, bool]:
    batch = int(example[0].shape[0])
    rec = _Recorder(gm, batch)
    modes = [(m, m.training) for m in gm.modules()]
    gm.eval()
    try:
        with torch.no_grad():
            rec.run(*example)
    except Exception as exc:  # noqa: BLE001 - the network itself fails on the records
        raise SplitError(f"the network fails on the dataset's records ({type(exc).__name__}: {str(exc)[:120]}); "
                         "check that the dataset's inputs match the network's forward()") from None
    finally:
        for m, was in modes:
            m.train(was)
    return rec.per_record


def _split_graph(gm: fx.GraphModule, example: Sequence[torch.Tensor] | None) -> list[Stage]:
    nodes = list(gm.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if example is None and len(placeholders) != 1:
        raise SplitError(
            f"the network takes {len(placeholders)} inputs; cutting it needs the dataset's records "
            "(the engine passes them)"
        )
    if example is not None and len(example) != len(placeholders):
        raise SplitError(f"the network takes {len(placeholders)} input(s) but the dataset's records have "
                         f"{len(example)}; store one array per input (x0, x1, ...) in forward()'s order")
    body = _body(gm)
    output = next(n for n in nodes if n.op == "output")
    position = {n: i for i, n in enumerate(body)}
    # last use of each value (get_attr constants are re-created per stage)
    last_use: dict[fx.Node, int] = {}
    for n in body + [output]:
        at = position.get(n, len(body))
        for a in n.all_input_nodes:
            if a.op != "get_attr":
                last_use[a] = max(last_use.get(a, -1), at)
    per_record = _per_record_values(gm, example) if example is not None else None

    def live_after(i: int) -> list[fx.Node]:
        return [v for v in (*placeholders, *body[:i + 1]) if last_use.get(v, -1) > i]

    cuts: list[tuple[int, list[fx.Node]]] = []
    for i, n in enumerate(body[:-1]):
        live = live_after(i)
        if per_record is None:
            if n.op == "call_module" and live == [n]:
                cuts.append((i, live))
        elif (n.op == "call_module" or body[i + 1].op == "call_module") and live \
                and all(per_record.get(v, False) for v in live):
            cuts.append((i, live))
    stages: list[Stage] = []
    bounds = [(-1, list(placeholders))] + cuts + [(len(body) - 1, [body[-1]])]
    for (lo, sources), (hi, outs) in zip(bounds[:-1], bounds[1:]):
        stages.append(_segment_stage(gm, lo, hi, sources, outs, last=hi == len(body) - 1))
    return stages


def _segment_stage(gm: fx.GraphModule, lo: int, hi: int, sources: list[fx.Node], outs: list[fx.Node],
                   last: bool) -> Stage:
    segment = _body(gm)[lo + 1:hi + 1]
    graph = fx.Graph()
    single_in = len(sources) == 1
    env: dict[fx.Node, fx.Node] = {}
    for i, s in enumerate(sources):
        env[s] = graph.placeholder("x" if single_in else f"x{i}")

    def lookup(a: fx.Node) -> fx.Node:
        if a not in env:
            if a.op != "get_attr":
                raise SplitError("internal: a stage reads a value from outside its cut; report this network")
            env[a] = graph.node_copy(a, lookup)
        return env[a]

    for n in segment:
        env[n] = graph.node_copy(n, lookup)
    single_out = last or len(outs) == 1
    if last:
        output = next(n for n in gm.graph.nodes if n.op == "output")
        graph.output(fx.node.map_arg(output.args[0], lookup))
    else:
        graph.output(env[outs[0]] if single_out else tuple(env[o] for o in outs))
    module: nn.Module = _StageModule(gm, graph)
    layers = [str(n.target) for n in segment if n.op == "call_module"]
    name = layers[-1] if layers else segment[-1].name
    packed_in = not single_in or _needs_packing(sources[0])
    packed_out = not last and (not single_out or _needs_packing(outs[0]))
    if packed_in or packed_out:
        module = PackedStage(module, _layout(sources) if packed_in else None, _layout(outs) if packed_out else None)
    return Stage(name, module, "", Segment(gm, lo, hi, tuple(sources), tuple(outs)), packed_out)


def _body(gm: fx.GraphModule) -> list[fx.Node]:
    """The nodes that compute (cut positions index this list)."""
    return [n for n in gm.graph.nodes if n.op not in ("placeholder", "output", "get_attr")]


def _needs_packing(value: fx.Node) -> bool:
    meta = value.meta.get("example_value")
    return meta is not None and meta.dtype != torch.float32


def _layout(values: list[fx.Node]) -> Layout:
    return Layout.of([v.meta["example_value"] for v in values])


def join_stages(stages: list[Stage]) -> Stage:
    """Consecutive stages as one (a prefix-tree edge that no candidate stops inside). Traced
    stages are cut again from the network of the last one (candidates' copies share node names)."""
    if len(stages) == 1:
        return stages[0]
    first, last = stages[0].segment, stages[-1].segment
    if first is None or last is None:
        return Stage(stages[-1].name, nn.Sequential(*(s.module for s in stages)), "", None, stages[-1].packed_out)
    gm = last.graph_module
    by_name = {n.name: n for n in gm.graph.nodes}
    sources = [by_name[n.name] for n in first.sources]
    return _segment_stage(gm, first.lo, last.hi, sources, list(last.outs), last=last.hi == len(_body(gm)) - 1)


def trainable_part(stages: list[Stage], frozen: int) -> list[Stage]:
    """The stages after the frozen prefix, joined into one where they were traced: a training
    step then runs the suffix as one graph (no packing between its stages, which autograd
    cannot see through) and sees exactly the layers a plain forward would."""
    rest = stages[frozen:]
    if len(rest) <= 1 or any(s.segment is None for s in rest):
        return rest
    return [join_stages(rest)]


def run_stages(stages: list[Stage], x: torch.Tensor) -> torch.Tensor:
    for s in stages:
        x = s.module(x)
    return x
