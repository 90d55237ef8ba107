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


# One tokenised input, unpadded: input_ids, attention_mask[, token_type_ids] as lists, so
# rows from many requests can be sorted by length and padded together (`pad`).
Row = dict[str, list[int]]


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

    def rows(self, texts: Sequence[str], pairs: Sequence[str] | None,
             truncate: bool) -> list[Row]:
        """One unpadded row per text (or pair), truncated as `encode` does."""
        ...

    def collate(self, rows: Sequence[Row], device: torch.device) -> dict[str, Tensor]:
        """Rows padded to the longest of them, as tensors on `device`."""
        ...


def pad(rows: Sequence[Row], pad_values: dict[str, int], left: bool = False) -> dict[
        str, list[list[int]]]:
    """Rows padded to the longest one: each key with its pad value (attention_mask 0)."""
    longest = max((len(r["input_ids"]) for r in rows), default=0)
    out: dict[str, list[list[int]]] = {}
    for key in rows[0] if rows else ():
        value = pad_values.get(key, 0)
        out[key] = [
            ([value] * (longest - len(r[key])) + r[key]) if left
            else (r[key] + [value] * (longest - len(r[key])))
            for r in rows
        ]
    return out


def _tensors(padded: dict[str, list[list[int]]], device: torch.device) -> dict[str, Tensor]:
    import torch

    return {k: torch.tensor(v, dtype=torch.long, device=device) for k, v in padded.items()}


@dataclass
class CompactTokenizer:
    """tokenizer.json through `tokenizers`; pad token and lengths from tokenizer_config."""

    tokenizer: Any
    max_length: int
    with_types: bool
    pad_id: int = 0

    @classmethod
    def from_json(cls, text: str, tokenizer_config: dict[str, Any], max_length: int,
                  with_types: bool) -> CompactTokenizer:
        """Configure padding (the config's pad token) and longest-first truncation."""
        import tokenizers

        tok = tokenizers.Tokenizer.from_str(text)
        pad_token = str(tokenizer_config.get("pad_token") or "[PAD]")
        pad_id = tok.token_to_id(pad_token)
        # No padding here: rows of many requests are padded together (`pad`, right side).
        tok.no_padding()
        tok.no_truncation()
        tok.enable_truncation(max_length=max_length, strategy="longest_first")
        return cls(tok, max_length, with_types, pad_id if pad_id is not None else 0)

    def rows(self, texts: Sequence[str], pairs: Sequence[str] | None,
             truncate: bool) -> list[Row]:
        items: list[Any] = list(zip(texts, pairs, strict=True)) if pairs is not None else list(
            texts)
        batch = self.tokenizer.encode_batch(items)
        if not truncate:
            # Truncation stays on (the settings are shared); what it cut off is kept aside.
            for i, enc in enumerate(batch):
                if enc.overflowing:
                    full = len(enc.ids) + sum(len(o.ids) for o in enc.overflowing)
                    raise _too_long(i, full, self.max_length)
        if self.with_types:
            return [{"input_ids": e.ids, "attention_mask": e.attention_mask,
                     "token_type_ids": e.type_ids} for e in batch]
        return [{"input_ids": e.ids, "attention_mask": e.attention_mask} for e in batch]

    def collate(self, rows: Sequence[Row], device: torch.device) -> dict[str, Tensor]:
        return _tensors(pad(rows, {"input_ids": self.pad_id}), device)

    def encode(
        self, texts: Sequence[str], pairs: Sequence[str] | None, truncate: bool,
        device: torch.device,
    ) -> dict[str, Tensor]:
        return self.collate(self.rows(texts, pairs, truncate), device)

    def count(self, texts: Sequence[str]) -> int:
        return sum(sum(e.attention_mask) for e in self.tokenizer.encode_batch(list(texts)))


@dataclass
class AutoTokenizerAdapter:
    """transformers.AutoTokenizer, keeping only the inputs the model's forward accepts."""

    tokenizer: Any
    max_length: int
    accepted: frozenset[str]

    def rows(self, texts: Sequence[str], pairs: Sequence[str] | None,
             truncate: bool) -> list[Row]:
        encoded = self.tokenizer(
            list(texts), list(pairs) if pairs is not None else None, padding=False,
            truncation="longest_first" if truncate else False,
            max_length=self.max_length if truncate else None,
        )
        keys = [k for k in encoded if k in self.accepted]
        rows: list[Row] = [{k: list(encoded[k][i]) for k in keys} for i in range(len(texts))]
        if not truncate:
            for i, row in enumerate(rows):
                if len(row["input_ids"]) > self.max_length:
                    raise _too_long(i, len(row["input_ids"]), self.max_length)
        return rows

    def collate(self, rows: Sequence[Row], device: torch.device) -> dict[str, Tensor]:
        tok = self.tokenizer
        values = {"input_ids": tok.pad_token_id or 0,
                  "token_type_ids": getattr(tok, "pad_token_type_id", 0)}
        return _tensors(pad(rows, values, left=tok.padding_side == "left"), device)

    def encode(
        self, texts: Sequence[str], pairs: Sequence[str] | None, truncate: bool,
        device: torch.device,
    ) -> dict[str, Tensor]:
        return self.collate(self.rows(texts, pairs, truncate), device)

    def count(self, texts: Sequence[str]) -> int:
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        return sum(len(ids) for ids in encoded["input_ids"])
