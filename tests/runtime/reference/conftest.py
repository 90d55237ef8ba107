"""Tiny random checkpoints of every supported encoder architecture, saved to disk by
transformers and sentence-transformers (nothing is downloaded); the tests serve them with
tests/runtime/conftest.py's start_models.

Every model: hidden 32, 2 layers, a 60-word WordPiece vocabulary. BERT-family checkpoints
get a BERT tokenizer (vocab.txt, token types); the others a RoBERTa-style one (<s> </s>,
pad id 1, no token types), as their real checkpoints have.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ARCHITECTURES = ("bert", "distilbert", "electra", "roberta", "xlm-roberta", "mpnet",
                 "deberta-v2", "modernbert")
_BERT_TOKENIZED = ("bert", "distilbert", "electra")
WORDS = ("hello", "world", "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
         "good", "bad", "movie", "film", "great", "terrible", "is", "was", "a", "an", "and",
         "not", "very", "some", "text", "paris", "berlin", "john", "mary", "lives", "in",
         "query", "passage", ":", "where", "does")
MAX_TOKENS = 64
# Short, long (truncated at MAX_TOKENS), odd characters, a pair-length edge.
TEXTS = [
    "hello world",
    "the quick brown fox jumps over the lazy dog",
    "John lives in Paris and Mary lives in Berlin",
    "Good movie! not very bad, some text.",
    "zzz qq",
    " ".join(["the lazy dog was very good"] * 20),
]
QUERY = "where does john live"
DOCUMENTS = ["john lives in paris", "the quick brown fox", "mary lives in berlin",
             "a very good movie", " ".join(["some text about a dog"] * 20)]


def _vocab(bert_style: bool) -> list[str]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    specials = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] if bert_style
                else ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    return list(dict.fromkeys(specials + list(WORDS) + letters + ["##" + c for c in letters]
                              + list(".,!?")))


def save_tokenizer(target: Path, bert_style: bool, model_max_length: int | None) -> int:
    """Write a tokenizer the way its family's real checkpoints are saved; returns vocab size."""
    vocab = _vocab(bert_style)
    target.mkdir(parents=True, exist_ok=True)
    limit = {"model_max_length": model_max_length} if model_max_length else {}
    if bert_style:
        from transformers import BertTokenizer

        (target / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
        BertTokenizer(vocab_file=str(target / "vocab.txt"), **limit).save_pretrained(target)
        return len(vocab)
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    ids = {tok: i for i, tok in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(ids, unk_token="<unk>"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])])
    tok.decoder = decoders.WordPiece()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>", **limit,
    ).save_pretrained(target)
    return len(vocab)


def tiny_config(arch: str, vocab_size: int, **extra: Any) -> Any:
    """A 2-layer, hidden-32 config of `arch`; pad id 1 for the RoBERTa-style families."""
    from transformers import AutoConfig

    common: dict[str, Any] = dict(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=MAX_TOKENS,
    )
    if arch not in _BERT_TOKENIZED:
        common.update(pad_token_id=1, bos_token_id=0, eos_token_id=2)
    if arch in ("roberta", "xlm-roberta", "mpnet"):
        common["max_position_embeddings"] = MAX_TOKENS + 2  # positions start after pad id
    if arch == "distilbert":
        common = dict(vocab_size=vocab_size, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                      max_position_embeddings=MAX_TOKENS)
    if arch == "electra":
        common["embedding_size"] = 32
    if arch == "modernbert":
        common.update(cls_token_id=0, sep_token_id=2, global_attn_every_n_layers=1,
                      local_attention=16)
    return AutoConfig.for_model(arch, **common, **extra)


def make_checkpoint(target: Path, arch: str, head: str | None = None, seed: int = 0,
                    model_max_length: int | None = MAX_TOKENS, **config: Any) -> Path:
    """Save a random `arch` model (head: None, 'sequence' or 'token') with its tokenizer."""
    import torch
    import transformers

    vocab_size = save_tokenizer(target, arch in _BERT_TOKENIZED, model_max_length)
    cls = {None: transformers.AutoModel,
           "sequence": transformers.AutoModelForSequenceClassification,
           "token": transformers.AutoModelForTokenClassification}[head]
    torch.manual_seed(seed)
    model = cls.from_config(tiny_config(arch, vocab_size, **config)).eval()
    with torch.no_grad():  # random heads are tiny; scale them so the outputs spread
        for name, param in model.named_parameters():
            if name.startswith(("classifier", "score")) and param.dim() == 2:
                param.mul_(20)
    model.save_pretrained(target, safe_serialization=True)
    return target


def oip(name: str, texts: list[str], **parameters: Any) -> dict[str, Any]:
    """An OIP v2 infer body of one BYTES input."""
    body: dict[str, Any] = {"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}
    if parameters:
        body["parameters"] = parameters
    return body


@pytest.fixture(scope="session")
def ref() -> Any:
    """This module's helpers, for tests (importlib mode cannot import conftest)."""
    import types

    return types.SimpleNamespace(
        ARCHITECTURES=ARCHITECTURES, TEXTS=TEXTS, QUERY=QUERY, DOCUMENTS=DOCUMENTS,
        MAX_TOKENS=MAX_TOKENS, make_checkpoint=make_checkpoint, oip=oip,
    )


def report(arch: str, task: str, compared: str, difference: float) -> None:
    """One line of the reference comparison table (pytest -s shows it)."""
    print(f"\nREFERENCE {arch:<24} {task:<22} {compared:<44} max diff {difference:.3g}")


@pytest.fixture(scope="session")
def record() -> Callable[[str, str, str, float], None]:
    """Print a reference comparison's largest difference."""
    return report
