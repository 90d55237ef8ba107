"""Tiny random causal LMs saved to disk with their tokenizers (nothing is downloaded), and
`serve` processes over them.

Two shapes, as their real checkpoints are made: a GPT-2 (byte-level BPE, one
<|endoftext|> token, no chat template, 128 positions) and a Llama (Metaspace BPE with <s>
prepended, grouped-query attention, a chat template in tokenizer_config.json, 4096
positions). The BPE merges are trained here on a few sentences. The `serve` processes
come from tests/runtime/conftest.py's start_models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CORPUS = [
    "hello world, the quick brown fox jumps over the lazy dog.",
    "a good movie is not a bad film; some text: where does john live? in paris.",
    "user assistant system: stop here, END of the answer 0123456789",
]
GPT2_POSITIONS = 128
LLAMA_POSITIONS = 4096
CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant:{% endif %}"
)


def _bpe(byte_level: bool, specials: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None if byte_level else "<unk>"))
    if byte_level:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=specials)
    tok.train_from_iterator(CORPUS * 4, trainer)
    return tok


def make_gpt2(target: Path, seed: int = 0) -> Path:
    """A 2-layer GPT-2 with a byte-level BPE tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, PreTrainedTokenizerFast

    tok = _bpe(True, ["<|endoftext|>"])
    PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        unk_token="<|endoftext|>", model_max_length=GPT2_POSITIONS,
    ).save_pretrained(target)
    config = GPT2Config(vocab_size=tok.get_vocab_size(), n_embd=32, n_layer=2, n_head=4,
                        n_positions=GPT2_POSITIONS, bos_token_id=0, eos_token_id=0,
                        initializer_range=0.3)
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).eval().save_pretrained(target)
    return target


def make_llama(target: Path, seed: int = 0) -> Path:
    """A 2-layer Llama (4 heads, 2 KV heads) with a Metaspace BPE tokenizer and a chat
    template."""
    import torch
    from tokenizers import processors
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    tok = _bpe(False, ["<unk>", "<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        chat_template=CHAT_TEMPLATE,
    ).save_pretrained(target)
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=LLAMA_POSITIONS, bos_token_id=tok.token_to_id("<s>"),
        eos_token_id=tok.token_to_id("</s>"))
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).eval().save_pretrained(target)
    return target


@dataclass(frozen=True)
class CausalModels:
    """Directories of the generated checkpoints."""

    gpt2: Path
    llama: Path


@pytest.fixture(scope="session")
def causal_models(tmp_path_factory: pytest.TempPathFactory) -> CausalModels:
    root = tmp_path_factory.mktemp("causal-lms")
    return CausalModels(make_gpt2(root / "gpt2"), make_llama(root / "llama"))


def reference_generate(model_dir: Path, ids: list[int], **kwargs: Any) -> tuple[str, int]:
    """transformers' own generate on `ids`: (decoded new text, new token count)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tensor = torch.tensor([ids])
    with torch.inference_mode():
        out = model.generate(tensor, attention_mask=torch.ones_like(tensor), **kwargs)
    new = out[0][len(ids):]
    return tok.decode(new, skip_special_tokens=True), len(new)


@pytest.fixture(scope="module")
def start_generators(start_models: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """start_models for {name: model dir} with task text-generation (a longer start-up
    allowance: transformers is imported and generate() warmed up)."""

    def start(models: dict[str, Path], configs: dict[str, dict[str, Any]] | None = None,
              wait: bool = True) -> dict[str, Any]:
        return start_models({name: (model_dir, "text-generation")
                             for name, model_dir in models.items()}, configs, wait, timeout=480)

    return start


@pytest.fixture(scope="session")
def gen() -> Any:
    """This module's helpers, for tests (importlib mode cannot import conftest)."""
    import types

    return types.SimpleNamespace(
        reference_generate=reference_generate, make_gpt2=make_gpt2, make_llama=make_llama,
        GPT2_POSITIONS=GPT2_POSITIONS, LLAMA_POSITIONS=LLAMA_POSITIONS,
    )
