"""A compact BERT encoder in plain torch, loading Hugging Face BERT checkpoints directly.

Importing `transformers` costs seconds of start-up; BERT-family encoders need ~100 lines
of torch. Parameter names mirror `transformers.BertModel`, so a checkpoint's state dict
loads as is (with the `bert.` prefix of task models stripped). Other architectures fall
back to transformers (see loader.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from modeldeploy_runtime.errors import LoadError


def _gelu_tanh(x: Tensor) -> Tensor:
    return F.gelu(x, approximate="tanh")


_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": F.relu,
}


class BertSettings(BaseModel):
    """The subset of a BERT config.json this encoder uses."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model_type: str = "bert"
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    position_embedding_type: str = "absolute"
    id2label: dict[int, str] | None = None


def supports(config: Mapping[str, Any]) -> bool:
    """True when this encoder can run the checkpoint described by `config`."""
    return (
        config.get("model_type") == "bert"
        and config.get("hidden_act", "gelu") in _ACTIVATIONS
        and config.get("position_embedding_type", "absolute") == "absolute"
    )


def _embedding(rows: int, dim: int) -> nn.Embedding:
    # Passing _weight skips normal_() init, which on the meta device first imports
    # torch's reference decompositions: ~5 s of start-up for numbers we overwrite.
    return nn.Embedding(rows, dim, _weight=torch.empty(rows, dim))


class _Embeddings(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.word_embeddings = _embedding(s.vocab_size, s.hidden_size)
        self.position_embeddings = _embedding(s.max_position_embeddings, s.hidden_size)
        self.token_type_embeddings = _embedding(s.type_vocab_size, s.hidden_size)
        self.LayerNorm = nn.LayerNorm(s.hidden_size, eps=s.layer_norm_eps)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = (
            self.word_embeddings(input_ids)
            + self.token_type_embeddings(token_type_ids)
            + self.position_embeddings(positions)[None]
        )
        out: Tensor = self.LayerNorm(x)
        return out


class _SelfAttention(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.query = nn.Linear(s.hidden_size, s.hidden_size)
        self.key = nn.Linear(s.hidden_size, s.hidden_size)
        self.value = nn.Linear(s.hidden_size, s.hidden_size)


class _DenseNorm(nn.Module):
    def __init__(self, d_in: int, d_out: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        out: Tensor = self.LayerNorm(self.dense(x) + residual)
        return out


class _Attention(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.self = _SelfAttention(s)
        self.output = _DenseNorm(s.hidden_size, s.hidden_size, s.layer_norm_eps)
        self.heads = s.num_attention_heads

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, t, h = x.shape
        d = h // self.heads

        def split(proj: nn.Linear) -> Tensor:
            projected: Tensor = proj(x)
            return projected.view(b, t, self.heads, d).transpose(1, 2)

        q, k, v = split(self.self.query), split(self.self.key), split(self.self.value)
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0 / math.sqrt(d))
        out: Tensor = self.output(ctx.transpose(1, 2).reshape(b, t, h), x)
        return out


class _Intermediate(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.dense = nn.Linear(s.hidden_size, s.intermediate_size)


class _Layer(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.attention = _Attention(s)
        self.intermediate = _Intermediate(s)
        self.output = _DenseNorm(s.intermediate_size, s.hidden_size, s.layer_norm_eps)
        self.act = _ACTIVATIONS[s.hidden_act]

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = self.attention(x, mask)
        out: Tensor = self.output(self.act(self.intermediate.dense(x)), x)
        return out


class _Encoder(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(s) for _ in range(s.num_hidden_layers))


class _Pooler(nn.Module):
    def __init__(self, s: BertSettings) -> None:
        super().__init__()
        self.dense = nn.Linear(s.hidden_size, s.hidden_size)


class BertEncoder(nn.Module):
    """BERT: token ids -> (last hidden states [B, T, H], pooled [CLS] [B, H] or None)."""

    def __init__(self, s: BertSettings, with_pooler: bool) -> None:
        super().__init__()
        self.embeddings = _Embeddings(s)
        self.encoder = _Encoder(s)
        self.pooler = _Pooler(s) if with_pooler else None

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        x = self.embeddings(input_ids, token_type_ids)
        # Boolean mask, True = attend; broadcast over heads and query positions.
        mask = attention_mask.bool()[:, None, None, :]
        for layer in self.encoder.layer:
            x = layer(x, mask)
        pooled = torch.tanh(self.pooler.dense(x[:, 0])) if self.pooler is not None else None
        return x, pooled


class Classifier(nn.Module):
    """BertForSequenceClassification's head: Linear over the pooled [CLS] state."""

    def __init__(self, hidden: int, labels: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(hidden, labels)


def _rename(key: str) -> str:
    # Checkpoints from the TF era call LayerNorm parameters gamma/beta.
    return key.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
        "LayerNorm.beta", "LayerNorm.bias"
    )


def build(
    settings: BertSettings, state: Mapping[str, Tensor], with_head: bool
) -> tuple[BertEncoder, Classifier | None]:
    """Build the modules on the meta device and adopt the checkpoint tensors (no copies)."""
    state = {_rename(k): v for k, v in state.items()}
    body = {k.removeprefix("bert."): v for k, v in state.items() if not k.startswith("classifier.")}
    body = {k: v for k, v in body.items() if not k.endswith("position_ids")}
    with_pooler = "pooler.dense.weight" in body
    with torch.device("meta"):
        encoder = BertEncoder(settings, with_pooler)
    _adopt(encoder, body, "encoder")
    head = None
    if with_head:
        if "classifier.weight" not in state:
            raise LoadError(
                "text-classification needs a checkpoint with a classifier head "
                "(classifier.weight); this one has none: use task 'embedding' or another model"
            )
        weight = state["classifier.weight"]
        with torch.device("meta"):
            head = Classifier(weight.shape[1], weight.shape[0])
        _adopt(head, {k: v for k, v in state.items() if k.startswith("classifier.")}, "head")
    return encoder, head


def _adopt(module: nn.Module, state: Mapping[str, Tensor], what: str) -> None:
    result = module.load_state_dict(dict(state), strict=False, assign=True)
    if result.missing_keys:
        raise LoadError(
            f"checkpoint lacks {len(result.missing_keys)} BERT {what} tensors, e.g. "
            f"{result.missing_keys[0]!r}: the weights do not match config.json"
        )
    module.eval()
