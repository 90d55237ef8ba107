"""Load a cached model version into a Pipeline, timing each phase separately.

Phases: import (torch, tokenizers, safetensors; transformers when the model needs it),
fileIO (read configs, tokenizer and the weight bytes into the page cache), deserialize
(modules built and handed the checkpoint tensors), deviceTransfer (to device and dtype).

Two ways to build the model: BERT checkpoints with a BERT tokenizer.json run on the compact
encoder in bert.py (no transformers import: the fast start-up path, proven identical in
tests/runtime/test_loader.py); every other architecture, and token-classification, runs
on transformers' Auto classes.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modeldeploy_contract.config import RuntimeConfig

from modeldeploy_runtime import modeldir
from modeldeploy_runtime.errors import LoadError

if TYPE_CHECKING:
    from torch import Tensor

    from modeldeploy_runtime.tasks import Forward, Pipeline, SentenceHead
    from modeldeploy_runtime.tokenizer import TextEncoder

log = logging.getLogger("modeldeploy.runtime")

Record = Callable[[str, float], None]


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


# The text-generation loader (generate.py) picks its device by the same rule.
device_for = _device


def _load_state(paths: list[Path], pickle: bool) -> dict[str, Any]:
    import safetensors.torch
    import torch

    state: dict[str, Any] = {}
    for path in paths:
        if pickle:
            state.update(torch.load(path, map_location="cpu", mmap=True, weights_only=True))
        else:
            state.update(safetensors.torch.load_file(path, device="cpu"))
    return state


def _compact(files: modeldir.ModelDir, task: str) -> bool:
    from modeldeploy_runtime import bert

    return (bert.supports(files.config) and files.compact_tokenizer
            and task in ("embedding", "text-classification", "reranking"))


def load(config: RuntimeConfig, entry: Path, record: Record) -> Pipeline:
    """Build the Pipeline for `config.task` from the cache entry, recording phase seconds."""
    import torch

    started = time.monotonic()
    files = modeldir.read(entry, config.allow_pickle, config.trust_remote_code)
    record("fileIO", time.monotonic() - started)

    started = time.monotonic()
    task = config.task
    labels = _labels(files.config)
    if task == "reranking" and len(labels) != 1:
        raise LoadError(
            f"task reranking needs a cross-encoder with one output (num_labels 1); this "
            f"checkpoint has {len(labels)} labels ({', '.join(labels[:4])}): use task "
            "text-classification, or a reranker checkpoint"
        )
    if _compact(files, task):
        modules, forward, tokenizer = _build_compact(files, task)
    else:
        model, tokenizer = _build_transformers(files, config, record)
        modules, forward = [model], _hf_forward(model, task)
    sentence = _sentence_head(files, config.allow_pickle) if task == "embedding" else None
    record("deserialize", time.monotonic() - started)

    started = time.monotonic()
    device = _device(config.device)
    dtype = getattr(torch, config.dtype)
    for module in modules:
        module.to(device=device, dtype=dtype)
    if sentence is not None:
        for linear, _ in sentence.dense:
            linear.to(device=device, dtype=dtype)
    record("deviceTransfer", time.monotonic() - started)
    tagger = _tagger(modules[0], tokenizer) if task == "token-classification" else None

    from modeldeploy_runtime.tasks import Pipeline, SentenceHead

    pipeline = Pipeline(
        task, tokenizer, forward, device, labels,
        sentence=sentence or SentenceHead(),
        multi_label=files.config.get("problem_type") == "multi_label_classification"
        or (task == "text-classification" and int(files.config.get("num_labels", 2)) == 1),
        score_activation=_score_activation(files) if task == "reranking" else "sigmoid",
        tagger=tagger,
    )
    return pipeline


def _score_activation(files: modeldir.ModelDir) -> str:
    from modeldeploy_runtime import pooling

    # CrossEncoder's default for one logit is Sigmoid unless its config names another.
    path = files.cross_encoder_activation or "torch.nn.modules.activation.Sigmoid"
    return pooling.activation_name(path, "the cross-encoder config (activation_fn)")


def _build_compact(files: modeldir.ModelDir, task: str) -> tuple[list[Any], Forward,
                                                                   TextEncoder]:
    from modeldeploy_runtime import bert
    from modeldeploy_runtime.tokenizer import CompactTokenizer

    classify = task != "embedding"
    settings = bert.BertSettings.model_validate(files.config)
    encoder, head = bert.build(settings, _load_state(files.weights, files.pickle),
                               with_head=classify)
    assert files.tokenizer_json is not None  # _compact() checked
    tokenizer = CompactTokenizer.from_json(files.tokenizer_json, files.tokenizer_config,
                                           files.max_length(task), with_types=True)

    def forward(features: dict[str, Tensor]) -> Tensor:
        hidden: Tensor
        hidden, pooled = encoder(features["input_ids"], features["attention_mask"],
                                 features["token_type_ids"])
        if head is None:
            return hidden
        if pooled is None:
            raise LoadError("checkpoint has no pooler; cannot classify")
        logits: Tensor = head.classifier(pooled)
        return logits

    return [encoder] + ([head] if head is not None else []), forward, tokenizer


# Tested against the reference libraries (tests/runtime/reference); other encoders that
# transformers knows load too, unproven.
SUPPORTED = ("bert", "distilbert", "electra", "roberta", "xlm-roberta", "mpnet", "deberta-v2",
             "modernbert")

_AUTO_CLASSES = {
    "embedding": "AutoModel",
    "reranking": "AutoModelForSequenceClassification",
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
}


def _build_transformers(files: modeldir.ModelDir, config: RuntimeConfig,
                        record: Record) -> tuple[Any, TextEncoder]:
    # transformers is slow to import; it is timed as part of the import phase.
    started = time.monotonic()
    import transformers

    from modeldeploy_runtime.tokenizer import AutoTokenizerAdapter

    record("import", time.monotonic() - started)
    cls = getattr(transformers, _AUTO_CLASSES[config.task])
    root = str(files.root)
    known = transformers.models.auto.configuration_auto.CONFIG_MAPPING
    if files.model_type not in known and not config.trust_remote_code:
        raise LoadError(
            f"config.json has model_type {files.model_type!r}, which transformers "
            f"{transformers.__version__} in this runtime image does not know; supported "
            f"encoders: {', '.join(SUPPORTED)} (runtime/README.md): use one of them, or an "
            "image with a newer transformers"
        )
    log.info("loading %s (%s) with transformers %s", files.model_type, root,
             transformers.__version__)
    try:
        model, info = cls.from_pretrained(
            root, local_files_only=True, use_safetensors=not files.pickle,
            trust_remote_code=config.trust_remote_code, output_loading_info=True)
    except (ValueError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise LoadError(
            f"transformers {transformers.__version__} cannot build a {_AUTO_CLASSES[config.task]} "
            f"for model_type {files.model_type!r}: {first_line}; supported encoders: "
            f"{', '.join(SUPPORTED)} (runtime/README.md)"
        ) from None
    missing = [k for k in info.get("missing_keys", ()) if "pooler" not in k]
    if config.task != "embedding" and missing:
        raise LoadError(
            f"task {config.task} needs a checkpoint with a trained head; this one lacks "
            f"{len(missing)} head tensors (e.g. {sorted(missing)[0]!r}), so the head would be "
            "random: use task 'embedding' or a checkpoint fine-tuned for the task"
        )
    try:
        tok = transformers.AutoTokenizer.from_pretrained(
            root, local_files_only=True, trust_remote_code=config.trust_remote_code)
    except (OSError, ValueError) as error:
        raise LoadError(f"cannot load the tokenizer in {root}: {error}") from None
    max_length = files.max_length(config.task)
    tok.model_max_length = max_length
    accepted = frozenset(inspect.signature(model.forward).parameters) & {
        "input_ids", "attention_mask", "token_type_ids"}
    return model.eval(), AutoTokenizerAdapter(tok, max_length, accepted)


def _hf_forward(model: Any, task: str) -> Forward:
    def forward(features: dict[str, Tensor]) -> Tensor:
        out = model(**features)
        result: Tensor = out.last_hidden_state if task == "embedding" else out.logits
        return result

    return forward


def _tagger(model: Any, tokenizer: TextEncoder) -> Any:
    import transformers

    from modeldeploy_runtime.tokenizer import AutoTokenizerAdapter

    assert isinstance(tokenizer, AutoTokenizerAdapter)
    return transformers.TokenClassificationPipeline(  # type: ignore[no-untyped-call]
        model=model, tokenizer=tokenizer.tokenizer, aggregation_strategy="simple",
        device=next(model.parameters()).device)


def _sentence_head(files: modeldir.ModelDir, allow_pickle: bool) -> SentenceHead:
    from modeldeploy_runtime import pooling
    from modeldeploy_runtime.tasks import SentenceHead

    st = files.sentence
    dense = []
    for layer in st.dense:
        activation = pooling.activation_name(layer.activation,
                                             f"{layer.path.name}/config.json")
        paths, pickle = modeldir.weight_files(layer.path, allow_pickle)
        (linear,) = pooling.build_dense(
            [(layer.in_features, layer.out_features, layer.bias)], [_load_state(paths, pickle)])
        dense.append((linear, activation))
    return SentenceHead(pooling=st.pooling, dense=tuple(dense), normalize=st.normalize,
                        lowercase=st.do_lower_case, prompts=dict(st.prompts),
                        default_prompt_name=st.default_prompt_name)
