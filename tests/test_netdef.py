"""Network capture (torch.fx and module-tree fallback) and rebuild without the user's class."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import bits, tiny_cnn
from modelhub.errors import GraphError
from modelhub.netdef import Graph, capture, rebuild


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        y = torch.nn.functional.relu6(self.bn(self.conv(x))) + x
        y = y.mean(dim=(2, 3))
        return self.head(y.view(y.size(0), -1))


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x):
        if x.sum() > 0:  # torch.fx cannot trace this branch
            x = self.a(x)
        return self.b(x)


@pytest.mark.parametrize("make", [tiny_cnn, Residual, lambda: nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 5))])
def test_rebuilt_network_computes_the_same_bits(make) -> None:
    model = make().eval()
    graph = Graph.from_json(capture(model).canonical())  # through storage form
    assert graph.traced and graph.rebuildable
    rebuilt = rebuild(graph)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    x = torch.randn(2, 1 if isinstance(model, type(tiny_cnn())) else 3, 8, 8)
    assert torch.equal(bits(rebuilt(x)), bits(model(x)))
    assert list(rebuilt.state_dict()) == list(model.state_dict())


def test_layer_nodes_carry_types_attributes_and_edges() -> None:
    g = capture(tiny_cnn())
    conv1 = g.node("conv1")
    assert (conv1.op, conv1.attrs["out_channels"], conv1.attrs["kernel_size"]) == ("Conv2d", 4, [3, 3])
    assert conv1.n_params == 4 * 1 * 9 + 4
    assert g.successors("conv1") == ["relu"]
    assert g.predecessors("pool1") == ["relu"]
    assert [n.name for n in g.layers] == ["conv1", "pool1", "conv2", "pool2", "fc1", "fc2"]


def test_untraceable_model_falls_back_to_module_tree_and_refuses_rebuild() -> None:
    g = capture(DataDependent())
    assert not g.traced and not g.rebuildable
    assert [n.name for n in g.layers] == ["a", "b"]
    with pytest.raises(GraphError, match="cannot be rebuilt; pass the model class"):
        rebuild(g)


def test_custom_layer_is_captured_but_not_rebuildable() -> None:
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.s = nn.Parameter(torch.ones(1))

        def forward(self, x):
            return x * self.s

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)
            self.scale = Scale()

        def forward(self, x):
            return self.scale(self.fc(x))

    g = capture(Net())
    assert g.traced and not g.rebuildable  # Scale's parameter is read as a raw attribute
    with pytest.raises(GraphError, match="raw parameter"):
        rebuild(g)


def test_graph_hash_depends_on_architecture_not_weights() -> None:
    assert capture(tiny_cnn(seed=1)).hash == capture(tiny_cnn(seed=2)).hash
    assert capture(tiny_cnn(n_classes=3)).hash != capture(tiny_cnn(n_classes=10)).hash


class Positions(nn.Module):
    """A device-correct forward, as transformers write it: positions made where the ids live."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(10, 4)
        self.positions = nn.Embedding(8, 4)

    def forward(self, ids):
        pos = torch.arange(ids.size(1), device=ids.device)
        return self.tokens(ids) + self.positions(pos)


def test_a_forward_that_reads_its_inputs_device_is_rebuilt() -> None:
    model = Positions().eval()
    graph = Graph.from_json(capture(model).canonical())
    assert graph.rebuildable
    assert [n.target for n in graph.nodes if n.op == "getattr"] == ["builtins.getattr"]
    rebuilt = rebuild(graph)
    rebuilt.load_state_dict(model.state_dict())
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert torch.equal(bits(rebuilt(ids)), bits(model(ids)))


def test_a_stored_graph_may_read_only_tensor_metadata_with_getattr() -> None:
    stored = capture(Positions()).to_json()
    for node in stored["nodes"]:
        if node.get("target") == "builtins.getattr":
            node["args"] = [node["args"][0], "__class__"]     # what a hostile remote could store
    with pytest.raises(GraphError, match=r"reads attribute \('__class__',\); a stored graph may read only device, "
                                         r"dtype, is_cuda, ndim, shape"):
        rebuild(Graph.from_json(stored))


def _hostile(edit) -> Graph:
    """A captured graph changed the way a hostile remote could change what it serves."""
    stored = capture(Residual()).to_json()
    edit(stored["nodes"])
    return Graph.from_json(stored)


def _retarget(target: str, op: str):
    def edit(nodes):
        node = next(n for n in nodes if n.get("target") == "operator.add")
        node["target"], node["op"] = target, op
    return edit


@pytest.mark.parametrize("target", ["operator.attrgetter", "operator.methodcaller", "torch.save", "torch.load",
                                    "torch.from_file", "torch.set_default_dtype", "torch.manual_seed", "torch.import_ir_module",
                                    "os.system"])
def test_a_stored_graph_cannot_name_functions_that_escape_torch(target) -> None:
    op = target.rpartition(".")[2]
    with pytest.raises(GraphError, match=rf"calls '{op}', which is not a standard torch function"):
        rebuild(_hostile(_retarget(target, op)))


@pytest.mark.parametrize("method", ["__getattribute__", "numpy", "untyped_storage", "tolist"])
def test_a_stored_graph_cannot_call_methods_that_leave_torch(method) -> None:
    def edit(nodes):
        node = next(n for n in nodes if n.get("kind") == "call_method")
        node["op"] = method
    with pytest.raises(GraphError, match=rf"calls method '{method}', which a stored graph may not call"):
        rebuild(_hostile(edit))


def test_functions_models_use_stay_rebuildable() -> None:
    from modelhub.netdef.ops import function_name, method_allowed
    for fn in (torch.flatten, torch.cat, torch.matmul, torch.arange, torch.einsum, torch.split,
               torch.nn.functional.relu, torch.nn.functional.softmax):
        assert function_name(fn) is not None, fn
    for name in ("view", "size", "permute", "transpose", "contiguous", "type_as", "masked_fill", "to"):
        assert method_allowed(name), name
