"""What the loader refuses, and the model files it honours, on generated checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from modeldeploy_contract.config import RuntimeConfig
from modeldeploy_runtime import loader
from modeldeploy_runtime.errors import LoadError
from modeldeploy_runtime.protocol import Options
from modeldeploy_runtime.tokenizer import TooLong


def _config(task: str = "embedding", **extra: Any) -> RuntimeConfig:
    return RuntimeConfig.model_validate({
        "model": {"name": "m", "version": "v1", "source": {"s3": {"bucket": "b"}}},
        "task": task, **extra})


def _load(model_dir: Path, task: str = "embedding", **extra: Any) -> Any:
    return loader.load(_config(task, **extra), model_dir, lambda *_: None)


def test_a_checkpoint_with_auto_map_is_refused_naming_the_key_and_the_opt_in(
    ref: Any, tmp_path: Path,
) -> None:
    model_dir = ref.make_checkpoint(tmp_path / "remote", "bert")
    config = json.loads((model_dir / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(LoadError, match=r"'auto_map'.*trustRemoteCode: true"):
        _load(model_dir)


def test_an_unknown_architecture_is_refused_with_the_supported_ones_named(
    ref: Any, tmp_path: Path,
) -> None:
    model_dir = ref.make_checkpoint(tmp_path / "odd", "roberta")
    config = json.loads((model_dir / "config.json").read_text())
    config["model_type"] = "not-a-model"
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(LoadError, match=r"model_type 'not-a-model'.*runtime/README\.md"):
        _load(model_dir)


def test_a_checkpoint_without_a_trained_head_is_refused_for_classification(
    ref: Any, tmp_path: Path,
) -> None:
    model_dir = ref.make_checkpoint(tmp_path / "headless", "distilbert")
    for task in ("text-classification", "token-classification"):
        with pytest.raises(LoadError, match="trained head"):
            _load(model_dir, task)
    one_output = ref.make_checkpoint(tmp_path / "headless-1", "distilbert", num_labels=1)
    with pytest.raises(LoadError, match="trained head"):
        _load(one_output, "reranking")


def test_reranking_a_checkpoint_with_several_labels_is_refused_at_load(
    ref: Any, tmp_path: Path,
) -> None:
    model_dir = ref.make_checkpoint(tmp_path / "two", "bert", head="sequence", num_labels=2)
    with pytest.raises(LoadError, match=r"num_labels 1.*2 labels"):
        _load(model_dir, "reranking")


def test_an_unsupported_sentence_transformers_module_is_refused_by_name(
    ref: Any, tmp_path: Path,
) -> None:
    model_dir = ref.make_checkpoint(tmp_path / "lstm", "bert")
    (model_dir / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_LSTM", "type": "sentence_transformers.models.LSTM"}]))
    with pytest.raises(LoadError, match=r"sentence_transformers\.models\.LSTM"):
        _load(model_dir)


def test_roberta_with_514_positions_and_no_tokenizer_limit_truncates_instead_of_crashing(
    ref: Any, tmp_path: Path,
) -> None:
    # Real RoBERTa/XLM-R: max_position_embeddings = 512 + 2 (padding offset); without a
    # model_max_length the usable length is 512, here 64 of 66.
    model_dir = ref.make_checkpoint(tmp_path / "roberta", "xlm-roberta", model_max_length=None)
    pipeline = _load(model_dir)
    assert pipeline.tokenizer.max_length == ref.MAX_TOKENS
    long_text = " ".join(["hello world"] * 200)
    assert pipeline.embed([long_text]).shape == (1, 32)
    with pytest.raises(TooLong, match=f"at most {ref.MAX_TOKENS}"):
        pipeline.embed([long_text], Options(truncate=False))


def test_a_bare_vocab_txt_follows_tokenizer_config_do_lower_case(
    ref: Any, tmp_path: Path,
) -> None:
    from sentence_transformers import SentenceTransformer

    model_dir = ref.make_checkpoint(tmp_path / "cased", "bert")
    (model_dir / "tokenizer.json").unlink()
    tok_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    tok_config["do_lower_case"] = False
    (model_dir / "tokenizer_config.json").write_text(json.dumps(tok_config))
    texts = ["Hello World", "hello world"]
    ours = _load(model_dir).embed(texts)
    theirs = SentenceTransformer(str(model_dir), device="cpu").encode(texts,
                                                                     convert_to_tensor=True)
    assert torch.nn.functional.cosine_similarity(ours, theirs.cpu()).min() >= 0.9999
    # Cased: "Hello" is not in the lower-case vocabulary, so the two texts differ.
    assert not torch.allclose(ours[0], ours[1], atol=1e-4)


def test_no_token_type_ids_reach_a_model_that_does_not_take_them(
    ref: Any, tmp_path: Path,
) -> None:
    model_dir = ref.make_checkpoint(tmp_path / "distil", "distilbert")
    pipeline = _load(model_dir)
    features = pipeline.tokenizer.encode(["a", "b"], ["c", "d"], True, torch.device("cpu"))
    assert set(features) == {"input_ids", "attention_mask"}
    bert = _load(ref.make_checkpoint(tmp_path / "bert", "bert"))
    assert "token_type_ids" in bert.tokenizer.encode(["a"], ["b"], True, torch.device("cpu"))
