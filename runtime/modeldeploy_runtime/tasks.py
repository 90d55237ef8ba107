"""The two tasks over a loaded encoder: sentence embeddings and text classification."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import Tensor

# (input_ids, attention_mask, token_type_ids) -> last hidden states [B, T, H] (embedding)
# or logits [B, labels] (classification).
Forward = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Output:
    """One named output tensor, already flattened for the wire."""

    name: str
    datatype: str
    shape: list[int]
    data: list[float] | list[str]


@dataclass
class Pipeline:
    """Tokenizer + forward function for one task; safe to call from many threads."""

    task: str
    tokenizer: Tokenizer
    forward: Forward
    device: torch.device
    labels: Sequence[str] = ()
    # One forward at a time: torch already uses every core for one batch, and the
    # tokenizer's padding/truncation settings are shared state.
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _encode(self, texts: Sequence[str]) -> tuple[Tensor, Tensor, Tensor]:
        batch = self.tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in batch], dtype=torch.long, device=self.device)
        mask = torch.tensor([e.attention_mask for e in batch], dtype=torch.long, device=self.device)
        types = torch.tensor([e.type_ids for e in batch], dtype=torch.long, device=self.device)
        return ids, mask, types

    def embed(self, texts: Sequence[str]) -> Tensor:
        """Mean-pooled, L2-normalised embeddings [n, dim] in float32 on the CPU."""
        with self._lock, torch.inference_mode():
            ids, mask, types = self._encode(texts)
            hidden = self.forward(ids, mask, types).float()
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * weights).sum(dim=1)
            counts = weights.sum(dim=1).clamp(min=1e-9)
            return F.normalize(summed / counts, p=2, dim=1).cpu()

    def classify(self, texts: Sequence[str]) -> tuple[list[str], list[float]]:
        """The most likely label per text and its softmax probability."""
        with self._lock, torch.inference_mode():
            ids, mask, types = self._encode(texts)
            probs = torch.softmax(self.forward(ids, mask, types).float(), dim=-1).cpu()
            scores, index = probs.max(dim=-1)
            return [self.labels[i] for i in index.tolist()], [float(s) for s in scores.tolist()]

    def run(self, texts: Sequence[str]) -> list[Output]:
        """Run the task and shape the result as Open Inference Protocol outputs."""
        n = len(texts)
        if self.task == "embedding":
            vectors = self.embed(texts)
            flat: list[float] = vectors.flatten().tolist()
            return [Output("embedding", "FP32", [n, int(vectors.shape[1])], flat)]
        labels, scores = self.classify(texts)
        return [Output("label", "BYTES", [n], labels), Output("score", "FP32", [n], scores)]
