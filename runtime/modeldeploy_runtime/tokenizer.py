"""Texts (or query/document pairs) to model inputs, as the model's tokenizer files say.

Two implementations of one interface: `CompactTokenizer` runs tokenizer.json with the
`tokenizers` library alone (BERT tokenizers, the fast start-up path: no transformers
import); `AutoTokenizerAdapter` runs `transformers.AutoTokenizer`, which honours every
tokenizer_config.json setting (do_lower_case, special tokens, sentencepiece models).
Both truncate pairs with 'longest_first', as sentence-transformers and transformers do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from modeldeploy_runtime.protocol import BadRequest

if TYPE_CHECKING:
    import torch
    from torch import Tensor


class TooLong(BadRequest):
    """An input exceeds the model's length and the request asked not to truncate."""


def _too_long(index: int, length: int, limit: int) -> TooLong:
    return TooLong(
        f"input {index} has {length} tokens; this model takes at most {limit}: shorten it, or "
        "leave parameters.truncate unset (true) to cut it to the limit"
    )


class TextEncoder(Protocol):
    """Tokenize a batch into the model's input tensors."""

    max_length: int

    def encode(
        self, texts: Sequence[str], pairs: Sequence[str] | None, truncate: bool,
        device: torch.device,
    ) -> dict[str, Tensor]:
        """input_ids, attention_mask and (when the model takes them) token_type_ids."""
        ...

    def count(self, texts: Sequence[str]) -> int:
        """Tokens in `texts` after truncation (for usage reports)."""
        ...


@dataclass
class CompactTokenizer:
    """tokenizer.json through `tokenizers`; pad token and lengths from tokenizer_config."""

    tokenizer: Any
    max_length: int
    with_types: bool

    @classmethod
    def from_json(cls, text: str, tokenizer_config: dict[str, Any], max_length: int,
                  with_types: bool) -> CompactTokenizer:
        """Configure padding (the config's pad token) and longest-first truncation."""
        import tokenizers

        tok = tokenizers.Tokenizer.from_str(text)
        pad_token = str(tokenizer_config.get("pad_token") or "[PAD]")
        pad_id = tok.token_to_id(pad_token)
        tok.no_padding()
        tok.enable_padding(pad_id=pad_id if pad_id is not None else 0, pad_token=pad_token)
        tok.no_truncation()
        tok.enable_truncation(max_length=max_length, strategy="longest_first")
        return cls(tok, max_length, with_types)

    def encode(
        self, texts: Sequence[str], pairs: Sequence[str] | None, truncate: bool,
        device: torch.device,
    ) -> dict[str, Tensor]:
        import torch

        items: list[Any] = list(zip(texts, pairs, strict=True)) if pairs is not None else list(
            texts)
        batch = self.tokenizer.encode_batch(items)
        if not truncate:
            # Truncation stays on (the settings are shared); what it cut off is kept aside.
            for i, enc in enumerate(batch):
                if enc.overflowing:
                    full = len(enc.ids) + sum(len(o.ids) for o in enc.overflowing)
                    raise _too_long(i, full, self.max_length)
        out = {
            "input_ids": torch.tensor([e.ids for e in batch], dtype=torch.long, device=device),
            "attention_mask": torch.tensor([e.attention_mask for e in batch], dtype=torch.long,
                                           device=device),
        }
        if self.with_types:
            out["token_type_ids"] = torch.tensor([e.type_ids for e in batch], dtype=torch.long,
                                                 device=device)
        return out

    def count(self, texts: Sequence[str]) -> int:
        return sum(sum(e.attention_mask) for e in self.tokenizer.encode_batch(list(texts)))


@dataclass
class AutoTokenizerAdapter:
    """transformers.AutoTokenizer, keeping only the inputs the model's forward accepts."""

    tokenizer: Any
    max_length: int
    accepted: frozenset[str]

    def encode(
        self, texts: Sequence[str], pairs: Sequence[str] | None, truncate: bool,
        device: torch.device,
    ) -> dict[str, Tensor]:
        encoded = self.tokenizer(
            list(texts), list(pairs) if pairs is not None else None, padding=True,
            truncation="longest_first" if truncate else False,
            max_length=self.max_length if truncate else None, return_tensors="pt",
        )
        if not truncate:
            lengths = encoded["attention_mask"].sum(dim=1).tolist()
            for i, length in enumerate(lengths):
                if length > self.max_length:
                    raise _too_long(i, int(length), self.max_length)
        return {k: v.to(device) for k, v in encoded.items() if k in self.accepted}

    def count(self, texts: Sequence[str]) -> int:
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        return sum(len(ids) for ids in encoded["input_ids"])
