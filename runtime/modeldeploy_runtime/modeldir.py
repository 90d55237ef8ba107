"""Read a model directory: config.json, weights, tokenizer settings and the
sentence-transformers files (modules.json, pooling, Dense, Normalize, prompts).

Nothing here imports torch: it decides what to load, loader.py loads it.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modeldeploy_runtime.errors import LoadError
from modeldeploy_runtime.pooling import PoolingSettings

# Architectures whose position ids start after the padding index (fairseq heritage):
# `max_position_embeddings` 514 holds 512 usable positions.
_PADDING_OFFSET = frozenset({
    "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "longformer",
    "data2vec-text", "ibert", "luke", "roberta-prelayernorm", "xmod",
})
# Above this a tokenizer's model_max_length is transformers' "no limit" placeholder.
_NO_LIMIT = 1_000_000
# The classes the compact `tokenizers` path reproduces exactly (they return token types).
_BERT_TOKENIZERS = frozenset({None, "BertTokenizer", "BertTokenizerFast"})


@dataclass(frozen=True)
class DenseSettings:
    """A sentence-transformers Dense module: Linear + activation over the pooled vector."""

    path: Path
    in_features: int
    out_features: int
    bias: bool
    activation: str


@dataclass(frozen=True)
class SentenceSettings:
    """How token states become one sentence vector, as sentence-transformers would do it.

    Without modules.json the default is sentence-transformers' own for a plain checkpoint:
    mean pooling over the attention mask, no Dense, no normalisation.
    """

    pooling: PoolingSettings = field(default_factory=PoolingSettings)
    dense: tuple[DenseSettings, ...] = ()
    normalize: bool = False
    do_lower_case: bool = False
    max_seq_length: int | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    from_modules_json: bool = False


@dataclass(frozen=True)
class ModelDir:
    """What is in one model directory, read once."""

    root: Path  # the directory of the transformer module (config.json, tokenizer)
    config: dict[str, Any]
    tokenizer_config: dict[str, Any]
    tokenizer_json: str | None
    weights: list[Path]
    pickle: bool
    sentence: SentenceSettings
    cross_encoder_activation: str | None

    @property
    def model_type(self) -> str:
        """config.json's model_type ('' when absent)."""
        return str(self.config.get("model_type", ""))

    @property
    def compact_tokenizer(self) -> bool:
        """True when the `tokenizers` library alone reproduces the tokenizer exactly."""
        return (self.tokenizer_json is not None
                and self.tokenizer_config.get("tokenizer_class") in _BERT_TOKENIZERS)

    def max_length(self, task: str) -> int:
        """Tokens per input after truncation: the length the model's files ask for
        (sentence-transformers' max_seq_length for embeddings, else the tokenizer's
        model_max_length), never more than the position table holds."""
        positions = int(self.config.get("max_position_embeddings") or 0)
        if positions and self.model_type in _PADDING_OFFSET:
            positions -= int(self.config.get("pad_token_id", 1)) + 1
        wanted: int | None = None
        if task == "embedding" and self.sentence.max_seq_length:
            wanted = self.sentence.max_seq_length
        else:
            raw = self.tokenizer_config.get("model_max_length")
            if isinstance(raw, int | float) and 0 < raw < _NO_LIMIT:
                wanted = int(raw)
        limits = [n for n in (wanted, positions) if n]
        return min(limits) if limits else 512


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or LoadError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise LoadError(f"cannot read {path.name}: {error}; the cache entry is damaged") from None
    if not isinstance(data, dict):
        raise LoadError(f"{path} holds {type(data).__name__}, not a JSON object")
    return data


def _optional_json(path: Path) -> dict[str, Any]:
    return read_json(path) if path.is_file() else {}


def weight_files(root: Path, allow_pickle: bool) -> tuple[list[Path], bool]:
    """The safetensors files in `root` (False), else its pickle files when allowed (True)."""
    weights = sorted(Path(p) for p in glob.glob(str(root / "*.safetensors")))
    if weights:
        return weights, False
    weights = sorted(Path(p) for p in glob.glob(str(root / "*.bin")))
    if not weights:
        raise LoadError(f"{root} holds no *.safetensors (or *.bin) weight files")
    if not allow_pickle:
        raise LoadError(
            f"{root} only has pickle weights ({weights[0].name}), which can run code when "
            "loaded: convert them to safetensors, or set allowPickle: true if you trust them"
        )
    return weights, True


def _module_kind(entry: dict[str, Any]) -> str:
    # Old files say sentence_transformers.models.Pooling, new ones
    # sentence_transformers.sentence_transformer.modules.pooling.Pooling: the class name decides.
    return str(entry.get("type", "")).rsplit(".", 1)[-1]


def _sentence(entry: Path) -> tuple[Path, SentenceSettings]:
    modules_path = entry / "modules.json"
    st_config = _optional_json(entry / "config_sentence_transformers.json")
    prompts = {str(k): str(v) for k, v in (st_config.get("prompts") or {}).items()}
    default_prompt = st_config.get("default_prompt_name")
    if not modules_path.is_file():
        bert_config = _optional_json(entry / "sentence_bert_config.json")
        return entry, SentenceSettings(
            max_seq_length=bert_config.get("max_seq_length"),
            do_lower_case=bool(bert_config.get("do_lower_case", False)),
            prompts=prompts, default_prompt_name=default_prompt,
        )
    try:
        modules = json.loads(modules_path.read_text(encoding="utf-8"))
        modules = sorted(modules, key=lambda m: int(m.get("idx", 0)))
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise LoadError(f"cannot read modules.json: {error}; the cache entry is damaged") from None
    root = entry
    pooling = PoolingSettings()
    dense: list[DenseSettings] = []
    normalize = False
    for module in modules:
        kind, path = _module_kind(module), entry / str(module.get("path", ""))
        if kind == "Transformer":
            root = path
        elif kind == "Pooling":
            pooling = PoolingSettings.from_config(read_json(path / "config.json"))
        elif kind == "Dense":
            cfg = read_json(path / "config.json")
            dense.append(DenseSettings(
                path=path, in_features=int(cfg["in_features"]),
                out_features=int(cfg["out_features"]), bias=bool(cfg.get("bias", True)),
                activation=str(cfg.get("activation_function", "torch.nn.modules.activation.Tanh")),
            ))
        elif kind == "Normalize":
            normalize = True
        else:
            raise LoadError(
                f"modules.json module {module.get('name')!r} has type {module.get('type')!r}, "
                "which this runtime does not run; supported: Transformer, Pooling, Dense, "
                "Normalize"
            )
    bert_config = _optional_json(root / "sentence_bert_config.json")
    return root, SentenceSettings(
        pooling=pooling, dense=tuple(dense), normalize=normalize,
        do_lower_case=bool(bert_config.get("do_lower_case", False)),
        max_seq_length=bert_config.get("max_seq_length"),
        prompts=prompts, default_prompt_name=default_prompt, from_modules_json=True,
    )


def _refuse_remote_code(root: Path, config: dict[str, Any], tok_config: dict[str, Any]) -> None:
    for name, document in (("config.json", config), ("tokenizer_config.json", tok_config)):
        if document.get("auto_map"):
            classes = ", ".join(sorted(str(v) for v in document["auto_map"].values())[:3])
            raise LoadError(
                f"{name} in {root} has 'auto_map' ({classes}): this checkpoint runs Python code "
                "from its repository, which the runtime does not do by default; set "
                "spec.runtime.trustRemoteCode: true if you trust that code, or use a "
                "checkpoint of a built-in architecture"
            )


def _activation(root: Path, config: dict[str, Any]) -> str | None:
    # sentence-transformers has stored a CrossEncoder's activation in three places over time.
    st = _optional_json(root / "config_sentence_transformers.json").get("activation_fn")
    nested = (config.get("sentence_transformers") or {}).get("activation_fn")
    legacy = config.get("sbert_ce_default_activation_function")
    found = st or nested or legacy
    return str(found) if found else None


def read(entry: Path, allow_pickle: bool, trust_remote_code: bool) -> ModelDir:
    """Read the model directory `entry`, refusing what cannot be served safely."""
    if not (entry / "config.json").is_file() and not (entry / "modules.json").is_file():
        raise LoadError(f"{entry} has no config.json; it is not a Hugging Face model directory")
    root, sentence = _sentence(entry)
    if not (root / "config.json").is_file():
        raise LoadError(f"{root} has no config.json; it is not a Hugging Face model directory")
    config = read_json(root / "config.json")
    tok_config = _optional_json(root / "tokenizer_config.json")
    if not trust_remote_code:
        _refuse_remote_code(root, config, tok_config)
    weights, pickle = weight_files(root, allow_pickle)
    tok_path = root / "tokenizer.json"
    tokenizer_json = tok_path.read_text(encoding="utf-8") if tok_path.is_file() else None
    if tokenizer_json is None and not any(
            (root / n).is_file() for n in ("vocab.txt", "tokenizer_config.json",
                                           "sentencepiece.bpe.model", "spm.model", "vocab.json")):
        raise LoadError(f"{root} has no tokenizer files (tokenizer.json, vocab.txt, ...)")
    # Read the weights once so the cost of the disk shows up in fileIO, not in deserialize.
    buffer = bytearray(8 << 20)
    for path in weights:
        with path.open("rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass
    return ModelDir(root, config, tok_config, tokenizer_json, weights, pickle, sentence,
                    _activation(root, config))
