"""Loading generated models: same numbers as transformers, phases timed, pickle refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from modeldeploy_contract.config import RuntimeConfig
from modeldeploy_runtime import loader, protocol
from modeldeploy_runtime.errors import LoadError

TEXTS = ["hello world", "the quick brown fox jumps over the lazy dog", "good movie!", "zzz qq"]


def _config(task: str = "embedding", **extra: Any) -> RuntimeConfig:
    return RuntimeConfig.model_validate({
        "model": {"name": "tiny", "version": "v1", "source": {"s3": {"bucket": "b"}}},
        "task": task, **extra,
    })


def _inputs(texts: list[str]) -> protocol.Inputs:
    return protocol.Inputs(None, texts, None, protocol.Options())


def _reference(model_dir: Path, classify: bool) -> Any:
    from tokenizers import Tokenizer
    from transformers import BertForSequenceClassification, BertModel

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(TEXTS)
    ids = torch.tensor([e.ids for e in enc])
    mask = torch.tensor([e.attention_mask for e in enc])
    with torch.inference_mode():
        if classify:
            model = BertForSequenceClassification.from_pretrained(model_dir).eval()
            return model(input_ids=ids, attention_mask=mask).logits.softmax(-1)
        hidden = BertModel.from_pretrained(model_dir).eval()(
            input_ids=ids, attention_mask=mask).last_hidden_state
        return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)


def test_the_compact_bert_path_equals_transformers_bert_with_mean_pooling(
    tiny_models: Any,
) -> None:
    phases: dict[str, float] = {}
    pipeline = loader.load(_config(), tiny_models.embedding, phases.__setitem__)
    ours = pipeline.embed(TEXTS)
    ref = _reference(tiny_models.embedding, classify=False)
    # Without modules.json: mean pooling, no normalisation (sentence-transformers' default).
    assert torch.allclose(ours, ref, atol=1e-5)
    assert set(phases) == {"fileIO", "deserialize", "deviceTransfer"}
    assert all(v >= 0 for v in phases.values())


def test_classification_labels_and_scores_match_transformers(tiny_models: Any) -> None:
    pipeline = loader.load(_config("text-classification"), tiny_models.classifier, lambda *_: None)
    labels, scores = pipeline.classify(TEXTS)
    probs = _reference(tiny_models.classifier, classify=True)
    expected = [("NEGATIVE", "POSITIVE")[i] for i in probs.argmax(-1).tolist()]
    assert labels == expected
    assert scores == pytest.approx(probs.max(-1).values.tolist(), abs=1e-5)


def test_oip_outputs_have_the_documented_shapes(tiny_models: Any) -> None:
    emb = loader.load(_config(), tiny_models.embedding, lambda *_: None).run(_inputs(TEXTS[:2]))
    assert [(o.name, o.datatype, o.shape) for o in emb] == [("embedding", "FP32", [2, 32])]
    assert len(emb[0].data) == 64
    cls = loader.load(_config("text-classification"), tiny_models.classifier,
                      lambda *_: None).run(_inputs(TEXTS[:3]))
    assert [(o.name, o.datatype, o.shape) for o in cls] == [
        ("label", "BYTES", [3]), ("score", "FP32", [3])]


def test_text_longer_than_the_position_table_is_truncated_not_a_crash(tiny_models: Any) -> None:
    pipeline = loader.load(_config(), tiny_models.embedding, lambda *_: None)
    assert pipeline.embed(["hello " * 500]).shape == (1, 32)


def _pickle_copy(model_dir: Path, target: Path) -> Path:
    from safetensors.torch import load_file

    target.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (target / name).write_bytes((model_dir / name).read_bytes())
    torch.save(load_file(model_dir / "model.safetensors"), target / "pytorch_model.bin")
    return target


def test_pickle_weights_are_refused_unless_allowed(tiny_models: Any, tmp_path: Path) -> None:
    model_dir = _pickle_copy(tiny_models.embedding, tmp_path / "pickled")
    with pytest.raises(LoadError, match=r"pickle weights .*allowPickle: true"):
        loader.load(_config(), model_dir, lambda *_: None)
    pipeline = loader.load(_config(allowPickle=True), model_dir, lambda *_: None)
    safe = loader.load(_config(), tiny_models.embedding, lambda *_: None)
    assert torch.allclose(pipeline.embed(TEXTS), safe.embed(TEXTS), atol=1e-6)


def test_classification_on_a_headless_checkpoint_says_what_to_change(tiny_models: Any) -> None:
    with pytest.raises(LoadError, match="classifier head"):
        loader.load(_config("text-classification"), tiny_models.embedding, lambda *_: None)


def test_a_directory_without_config_json_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"no config\.json"):
        loader.load(_config(), tmp_path, lambda *_: None)


def test_bfloat16_dtype_is_applied_to_the_weights(tiny_models: Any) -> None:
    pipeline = loader.load(_config(dtype="bfloat16"), tiny_models.embedding, lambda *_: None)
    ours = pipeline.embed(TEXTS)
    ref = loader.load(_config(), tiny_models.embedding, lambda *_: None).embed(TEXTS)
    assert ours.dtype == torch.float32  # outputs are always float32 on the wire
    # Same direction, different rounding: proof the weights really ran in bfloat16.
    assert torch.nn.functional.cosine_similarity(ours, ref).min().item() > 0.98
    assert not torch.equal(ours, ref)
