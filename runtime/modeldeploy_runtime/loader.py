"""Load a cached model version into a Pipeline, timing each phase separately.

Phases: import (torch, tokenizers, safetensors), fileIO (read configs, tokenizer and the
weight bytes into the page cache), deserialize (safetensors tensors memory-mapped, modules
built on the meta device and handed those tensors), deviceTransfer (to device and dtype).
"""

from __future__ import annotations

import glob
import inspect
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modeldeploy_contract.config import RuntimeConfig

from modeldeploy_runtime.errors import LoadError

if TYPE_CHECKING:
    from modeldeploy_runtime.tasks import Pipeline

log = logging.getLogger("modeldeploy.runtime")

Record = Callable[[str, float], None]


@dataclass(frozen=True)
class _Files:
    config: dict[str, Any]
    tokenizer_json: str | None
    vocab_path: Path | None
    weights: list[Path]
    pickle: bool
    max_length: int


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise LoadError(f"cannot read {path.name}: {error}; the cache entry is damaged") from None
    return data


def _read_files(entry: Path, allow_pickle: bool) -> _Files:
    config_path = entry / "config.json"
    if not config_path.is_file():
        raise LoadError(f"{entry} has no config.json; it is not a Hugging Face model directory")
    config = _read_json(config_path)
    weights = sorted(Path(p) for p in glob.glob(str(entry / "*.safetensors")))
    pickle = False
    if not weights:
        weights = sorted(Path(p) for p in glob.glob(str(entry / "*.bin")))
        if not weights:
            raise LoadError(f"{entry} holds no *.safetensors (or *.bin) weight files")
        if not allow_pickle:
            raise LoadError(
                f"{entry} only has pickle weights ({weights[0].name}), which can run code when "
                "loaded: convert them to safetensors, or set allowPickle: true if you trust them"
            )
        pickle = True
    tok_path = entry / "tokenizer.json"
    tokenizer_json = tok_path.read_text(encoding="utf-8") if tok_path.is_file() else None
    vocab = entry / "vocab.txt"
    if tokenizer_json is None and not vocab.is_file():
        raise LoadError(f"{entry} has neither tokenizer.json nor vocab.txt")
    st = entry / "sentence_bert_config.json"
    limit = int(config.get("max_position_embeddings", 512))
    max_length = int(_read_json(st).get("max_seq_length", limit)) if st.is_file() else limit
    # Read the weights once so the cost of the disk shows up here, not in deserialize.
    buffer = bytearray(8 << 20)
    for path in weights:
        with path.open("rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass
    return _Files(config, tokenizer_json, vocab if vocab.is_file() else None, weights, pickle,
                  min(max_length, limit))


def _tokenizer(files: _Files) -> Any:
    import tokenizers
    import tokenizers.implementations

    tok: Any
    if files.tokenizer_json is not None:
        tok = tokenizers.Tokenizer.from_str(files.tokenizer_json)
    else:
        assert files.vocab_path is not None
        tok = tokenizers.implementations.BertWordPieceTokenizer(  # type: ignore[attr-defined]
            str(files.vocab_path), lowercase=True
        )
    pad_id = tok.token_to_id("[PAD]")
    tok.no_padding()
    tok.enable_padding(pad_id=pad_id if pad_id is not None else 0, pad_token="[PAD]")
    tok.no_truncation()
    tok.enable_truncation(max_length=files.max_length)
    return tok


def _labels(config: dict[str, Any]) -> list[str]:
    raw = config.get("id2label") or {}
    count = len(raw) or int(config.get("num_labels", 2))
    return [str(raw.get(str(i), raw.get(i, f"LABEL_{i}"))) for i in range(count)]


def _device(requested: str) -> Any:
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise LoadError("device 'cuda' was requested but no CUDA device is visible; "
                        "use device 'auto' or 'cpu', or schedule onto a GPU node")
    return torch.device(requested)


def _load_state(files: _Files) -> dict[str, Any]:
    import safetensors.torch
    import torch

    state: dict[str, Any] = {}
    for path in files.weights:
        if files.pickle:
            state.update(torch.load(path, map_location="cpu", mmap=True, weights_only=True))
        else:
            state.update(safetensors.torch.load_file(path, device="cpu"))
    return state


def load(config: RuntimeConfig, entry: Path, record: Record) -> Pipeline:
    """Build the Pipeline for `config.task` from the cache entry, recording phase seconds."""
    import torch

    from modeldeploy_runtime import bert
    from modeldeploy_runtime.tasks import Pipeline

    started = time.monotonic()
    files = _read_files(entry, config.allow_pickle)
    record("fileIO", time.monotonic() - started)

    started = time.monotonic()
    classify = config.task == "text-classification"
    tokenizer = _tokenizer(files)
    forward: Callable[[Any, Any, Any], Any]
    if bert.supports(files.config):
        settings = bert.BertSettings.model_validate(files.config)
        encoder, head = bert.build(settings, _load_state(files), with_head=classify)
        modules: list[torch.nn.Module] = [encoder] + ([head] if head is not None else [])
    else:
        modules = [_transformers_model(entry, classify, files.pickle, record)]
    record("deserialize", time.monotonic() - started)

    started = time.monotonic()
    device = _device(config.device)
    dtype = getattr(torch, config.dtype)
    for module in modules:
        module.to(device=device, dtype=dtype)
    record("deviceTransfer", time.monotonic() - started)

    if bert.supports(files.config):
        encoder_module = modules[0]
        head_module: Any = modules[1] if classify else None

        def forward(ids: Any, mask: Any, types: Any) -> Any:
            hidden, pooled = encoder_module(ids, mask, types)
            if head_module is None:
                return hidden
            if pooled is None:
                raise LoadError("checkpoint has no pooler; cannot classify")
            return head_module.classifier(pooled)
    else:
        hf = modules[0]
        # DistilBERT and friends take no token_type_ids.
        takes_types = "token_type_ids" in inspect.signature(hf.forward).parameters

        def forward(ids: Any, mask: Any, types: Any) -> Any:
            extra = {"token_type_ids": types} if takes_types else {}
            out = hf(input_ids=ids, attention_mask=mask, **extra)
            return out.logits if classify else out.last_hidden_state

    return Pipeline(config.task, tokenizer, forward, device, _labels(files.config))


def _transformers_model(entry: Path, classify: bool, pickle: bool, record: Record) -> Any:
    # Only for non-BERT architectures: transformers is slow to import, so it is timed as import.
    started = time.monotonic()
    import transformers

    record("import", time.monotonic() - started)
    cls = (transformers.AutoModelForSequenceClassification if classify
           else transformers.AutoModel)
    log.info("architecture is not BERT; loading %s with transformers", entry)
    return cls.from_pretrained(str(entry), local_files_only=True, use_safetensors=not pickle).eval()
