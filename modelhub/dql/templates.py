"""Node templates: `CONV`, `POOL("MAX")`, `RELU`, `FC`, `BN`, `DROPOUT`, `SOFTMAX`,
`FLATTEN`, or any torch layer type by name, with attribute arguments
(`CONV(kernel_size=3)`). Used to match nodes (`has`) and to create them (`insert`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import BindError, ExecutionError, suggestion

# op-name regexes per template; functional forms (torch.nn.functional / tensor methods) included
_FAMILIES: dict[str, str] = {
    "CONV": r"(?:Lazy)?Conv(?:Transpose)?[123]d|conv[123]d|conv_transpose[123]d",
    "POOL": r"(?:Adaptive)?(?:Max|Avg)Pool[123]d|(?:adaptive_)?(?:max|avg)_pool[123]d",
    "RELU": r"ReLU|relu_?",
    "FC": r"Linear|LazyLinear|linear",
    "BN": r"(?:Lazy)?BatchNorm[123]d|SyncBatchNorm|batch_norm",
    "DROPOUT": r"(?:Alpha|FeatureAlpha)?Dropout(?:[123]d)?|dropout(?:[123]d)?",
    "SOFTMAX": r"Softmax|softmax",
    "FLATTEN": r"Flatten|flatten",
}
_POOL_KINDS = {"MAX": r"(?i:.*max.*)", "AVG": r"(?i:.*avg.*)"}

#: torch.nn layer types accepted by name even when the catalog holds none yet
TORCH_LAYERS = frozenset("""
Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d ConvTranspose3d Linear Bilinear Identity
MaxPool1d MaxPool2d MaxPool3d AvgPool1d AvgPool2d AvgPool3d AdaptiveAvgPool1d AdaptiveAvgPool2d
AdaptiveAvgPool3d AdaptiveMaxPool1d AdaptiveMaxPool2d AdaptiveMaxPool3d LPPool2d
BatchNorm1d BatchNorm2d BatchNorm3d LayerNorm GroupNorm InstanceNorm1d InstanceNorm2d LocalResponseNorm
ReLU ReLU6 LeakyReLU PReLU ELU SELU GELU SiLU Mish Sigmoid Tanh Hardswish Hardsigmoid Softplus
Softmax LogSoftmax Dropout Dropout1d Dropout2d Dropout3d AlphaDropout Flatten Unflatten
Embedding EmbeddingBag LSTM GRU RNN MultiheadAttention TransformerEncoderLayer Upsample ZeroPad2d
""".split())


@dataclass(frozen=True)
class TemplateSpec:
    name: str                                   # CONV, POOL, ... or a torch type name
    args: tuple[Any, ...]                       # positional literal values
    kwargs: tuple[tuple[str, Any], ...]

    def text(self) -> str:
        parts = [json.dumps(a) for a in self.args] + [f"{k}={json.dumps(v)}" for k, v in self.kwargs]
        return f"{self.name}({', '.join(parts)})" if parts else self.name

    # -- matching -------------------------------------------------------------------
    def op_regex(self) -> str:
        fam = _FAMILIES.get(self.name.upper())
        if fam is None:
            return re.escape(self.name)
        if self.name.upper() == "POOL" and self.args:
            kind = _POOL_KINDS[str(self.args[0]).upper()]
            return f"(?={kind})(?:{fam})"
        return fam

    def matches(self, op: str, attrs_json: str | dict) -> bool:
        if not re.fullmatch(self.op_regex(), op):
            return False
        if not self.kwargs:
            return True
        attrs = json.loads(attrs_json) if isinstance(attrs_json, str) else attrs_json
        return all(_attr_equal(attrs.get(k, _MISSING), v) for k, v in self.kwargs)


_MISSING = object()


def _attr_equal(actual: Any, wanted: Any) -> bool:
    if actual is _MISSING:
        return False
    if isinstance(actual, (list, tuple)) and not isinstance(wanted, (list, tuple)):
        # kernel_size=3 matches a stored (3, 3)
        return len(actual) > 0 and all(_attr_equal(a, wanted) for a in actual)
    if isinstance(actual, bool) or isinstance(wanted, bool):
        return actual is wanted
    if isinstance(actual, (int, float)) and isinstance(wanted, (int, float)):
        return float(actual) == float(wanted)
    return actual == wanted


def bind_template(name: str, args: tuple, kwargs: tuple, known_ops: set[str], for_insert: bool) -> TemplateSpec:
    """Check a template against the known families and op names."""
    upper = name.upper()
    if upper in _FAMILIES:
        name = upper
    elif name not in TORCH_LAYERS and name not in known_ops:
        choices = set(_FAMILIES) | TORCH_LAYERS | known_ops
        raise BindError(f"unknown layer template {name}: {suggestion(name, choices, 'templates')}")
    spec_args = tuple(args)
    if for_insert:
        if not spec_args or not isinstance(spec_args[0], str):
            raise BindError(f'{name} needs the new layer\'s name as its first argument, e.g. {name}("relu$1")')
        rest = spec_args[1:]
    else:
        rest = spec_args
    if name == "POOL":
        if len(rest) > 1 or (rest and str(rest[0]).upper() not in _POOL_KINDS):
            raise BindError('POOL takes "MAX" or "AVG", e.g. POOL("MAX")')
    elif rest:
        raise BindError(f"{name} takes only attribute arguments such as {name}(kernel_size=3), "
                        f"not {', '.join(json.dumps(r) for r in rest)}")
    return TemplateSpec(name, spec_args, tuple(kwargs))


# ---- creating nodes (construct ... insert) ------------------------------------------
_DEFAULT_OPS = {"RELU": "ReLU", "DROPOUT": "Dropout", "SOFTMAX": "Softmax", "FLATTEN": "Flatten"}


def new_layer(spec: TemplateSpec, after_op: str, after_attrs: dict) -> tuple[str, dict, int, dict]:
    """(op, attrs, n_params, param_shapes) of a layer inserted after a node of type ``after_op``."""
    dims = (re.search(r"([123])d$", after_op) or re.search(r"([123])d", after_op))
    d = dims.group(1) if dims else "2"
    attrs = dict(spec.kwargs)
    name = spec.name
    if name in _DEFAULT_OPS:
        op = _DEFAULT_OPS[name]
        if op == "Softmax":
            attrs.setdefault("dim", 1)
    elif name == "POOL":
        kind = str(spec.args[1]).upper() if len(spec.args) > 1 else "MAX"
        op = ("MaxPool" if kind == "MAX" else "AvgPool") + d + "d"
        attrs.setdefault("kernel_size", 2)
    elif name == "BN":
        op = f"BatchNorm{d}d" if after_op != "Linear" else "BatchNorm1d"
        width = after_attrs.get("out_channels", after_attrs.get("out_features", after_attrs.get("num_features")))
        if "num_features" not in attrs:
            if width is None:
                raise ExecutionError(f"cannot infer num_features for BN after a {after_op}; write BN(\"name\", num_features=N)")
            attrs["num_features"] = width
    elif name in ("CONV", "FC"):
        raise ExecutionError(f"insert {name} by its torch type with all constructor arguments, "
                             "e.g. Conv2d(\"conv_new\", in_channels=64, out_channels=64, kernel_size=3)")
    else:
        op = name
    n_params, shapes = 0, {}
    if op.startswith("BatchNorm"):
        c = int(attrs["num_features"])
        n_params, shapes = 2 * c, {"weight": [c], "bias": [c]}
    return op, attrs, n_params, shapes
