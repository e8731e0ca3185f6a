"""Cut a network into a chain of stages, the unit of prefix reuse.

A stage is a piece of the network whose input and output are one tensor, so
the output of any prefix of stages can be stored and fed to the rest.
``nn.Sequential`` networks (nested ones flattened) cut between children; any
other module is traced with torch.fx (graphs rebuilt by modelhub.netdef are
GraphModules already) and cut after each layer where exactly one value flows
on. Stages keep the original parameter names, so per-layer learning rates
still address the user's layer names.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx, nn

from .errors import SplitError

#: Layers that behave differently in training mode. A parameter-free one ends
#: the frozen prefix: plain training would run it in training mode.
MODE_SENSITIVE = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase, nn.RReLU)


@dataclass(frozen=True, eq=False)
class Stage:
    name: str               # for display only; reuse never depends on names
    module: nn.Module       # forward(x) -> y
    param_prefix: str       # prefix turning the module's parameter names into the network's

    def named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(self.param_prefix + n, p) for n, p in self.module.named_parameters()]

    @property
    def mode_sensitive(self) -> bool:
        return any(isinstance(m, MODE_SENSITIVE) for m in self.module.modules())


def split_into_stages(model: nn.Module) -> list[Stage]:
    if isinstance(model, nn.Sequential):
        return _split_sequential(model, "")
    gm = model if isinstance(model, fx.GraphModule) else _trace(model)
    return _split_graph(gm)


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
        raise SplitError(
            f"cannot cut {type(model).__name__} into stages ({type(exc).__name__}: {str(exc)[:80]}); "
            "commit the network as nn.Sequential or make its forward traceable by torch.fx"
        ) from None


def _split_graph(gm: fx.GraphModule) -> list[Stage]:
    nodes = [n for n in gm.graph.nodes]
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise SplitError(
            f"the network takes {len(placeholders)} inputs; prefix reuse needs exactly one input tensor"
        )
    body = [n for n in nodes if n.op not in ("placeholder", "output", "get_attr")]
    output = next(n for n in nodes if n.op == "output")
    position = {n: i for i, n in enumerate(body)}
    # last use of each value (get_attr constants are re-created per stage)
    last_use: dict[fx.Node, int] = {}
    for n in body + [output]:
        at = position.get(n, len(body))
        for a in n.all_input_nodes:
            if a.op != "get_attr":
                last_use[a] = max(last_use.get(a, -1), at)
    cuts: list[int] = []
    for i, n in enumerate(body):
        if n.op != "call_module" or i == len(body) - 1:
            continue
        live = [v for v, last in last_use.items() if last > i and (v in position and position[v] <= i or v.op == "placeholder")]
        if live == [n]:
            cuts.append(i)
    bounds = [-1] + cuts + [len(body) - 1]
    stages: list[Stage] = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        segment = body[lo + 1:hi + 1]
        source = placeholders[0] if lo < 0 else body[lo]
        stages.append(_segment_module(gm, segment, source))
    return stages


def _segment_module(gm: fx.GraphModule, segment: list[fx.Node], source: fx.Node) -> Stage:
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {source: graph.placeholder("x")}

    def lookup(a: fx.Node) -> fx.Node:
        if a not in env:
            if a.op != "get_attr":
                raise SplitError("internal: a stage reads a value from outside its cut; report this network")
            env[a] = graph.node_copy(a, lookup)
        return env[a]

    for n in segment:
        env[n] = graph.node_copy(n, lookup)
    graph.output(env[segment[-1]])
    module = fx.GraphModule(gm, graph)
    layers = [str(n.target) for n in segment if n.op == "call_module"]
    name = layers[-1] if layers else segment[-1].name
    return Stage(name, module, "")


def run_stages(stages: list[Stage], x: torch.Tensor) -> torch.Tensor:
    for s in stages:
        x = s.module(x)
    return x
