"""Embeddings through the real `serve` process and its HTTP APIs equal sentence-transformers'
SentenceTransformer on the same files: every architecture, every pooling mode, Dense,
Normalize, max_seq_length and prompts."""

from __future__ import annotations

import base64
import struct
from pathlib import Path
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.slow

ARCHITECTURES = ("bert", "distilbert", "electra", "roberta", "xlm-roberta", "mpnet",
                 "deberta-v2", "modernbert")
# name -> (architecture, pooling_mode, dense, normalize, max_seq_length, include_prompt)
POOLINGS: dict[str, tuple[str, Any, bool, bool, int | None, bool]] = {
    "st-cls-dense-normalize": ("bert", "cls", True, True, None, True),
    "st-max": ("bert", "max", False, False, None, True),
    "st-lasttoken-roberta": ("roberta", "lasttoken", False, True, None, True),
    "st-weightedmean-sqrt-len": ("bert", ("weightedmean", "mean_sqrt_len_tokens"), False, False,
                                 16, True),
    "st-mean-prompt-excluded": ("xlm-roberta", "mean", True, False, None, False),
}
PROMPTS = {"query": "query: ", "passage": "passage: "}


def _st_model(target: Path, checkpoint: Path, spec: tuple[Any, ...]) -> Path:
    from sentence_transformers import SentenceTransformer, models

    _, mode, dense, normalize, max_seq_length, include_prompt = spec
    transformer = models.Transformer(str(checkpoint))
    modules: list[Any] = [transformer, models.Pooling(32, pooling_mode=mode,
                                                      include_prompt=include_prompt)]
    width = 32 * (len(mode) if isinstance(mode, tuple) else 1)
    if dense:
        torch.manual_seed(1)
        modules.append(models.Dense(width, 16))
    if normalize:
        modules.append(models.Normalize())
    model = SentenceTransformer(modules=modules, prompts=PROMPTS, device="cpu")
    if max_seq_length:
        model.max_seq_length = max_seq_length
    model.save(str(target))
    return target


@pytest.fixture(scope="module")
def servers(ref: Any, start_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("embedding-models")
    models: dict[str, tuple[Path, str]] = {}
    for arch in ARCHITECTURES:
        models[f"plain-{arch}"] = (ref.make_checkpoint(root / f"plain-{arch}", arch), "embedding")
    for name, spec in POOLINGS.items():
        checkpoint = ref.make_checkpoint(root / f"{name}-hf", spec[0], seed=2)
        models[name] = (_st_model(root / name, checkpoint, spec), "embedding")
    return start_models(models)


def _reference(model_dir: Path, texts: list[str], prompt_name: str | None = None) -> torch.Tensor:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    out: torch.Tensor = model.encode(texts, convert_to_tensor=True, prompt_name=prompt_name)
    return out.cpu().float()


def _oip_embeddings(server: Any, ref: Any, texts: list[str], **params: Any) -> torch.Tensor:
    status, body = server.post(f"/v2/models/{server.name}/infer", ref.oip(server.name, texts,
                                                                          **params))
    assert status == 200, body
    (out,) = body["outputs"]
    return torch.tensor(out["data"]).view(out["shape"])


def _assert_same(ours: torch.Tensor, theirs: torch.Tensor) -> tuple[float, float]:
    assert ours.shape == theirs.shape
    cosine = torch.nn.functional.cosine_similarity(ours, theirs)
    norms = (ours.norm(dim=1) - theirs.norm(dim=1)).abs() / theirs.norm(dim=1)
    assert cosine.min().item() >= 0.9999, cosine.tolist()
    assert norms.max().item() <= 1e-4, norms.tolist()
    return 1 - cosine.min().item(), norms.max().item()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_a_plain_checkpoint_embeds_as_sentence_transformers_default_mean_pooling(
    servers: Any, ref: Any, record: Any, arch: str,
) -> None:
    server = servers[f"plain-{arch}"]
    ours = _oip_embeddings(server, ref, ref.TEXTS)
    cos, norm = _assert_same(ours, _reference(server.model_dir, ref.TEXTS))
    record(arch, "embedding", "OIP vs SentenceTransformer, mean (1-cos, norm)", max(cos, norm))


@pytest.mark.parametrize("name", list(POOLINGS))
def test_sentence_transformers_modules_pooling_dense_normalize_are_honoured(
    servers: Any, ref: Any, record: Any, name: str,
) -> None:
    server = servers[name]
    ours = _oip_embeddings(server, ref, ref.TEXTS)
    cos, norm = _assert_same(ours, _reference(server.model_dir, ref.TEXTS))
    record(POOLINGS[name][0], "embedding", f"{name} (1-cos, norm)", max(cos, norm))


@pytest.mark.parametrize("name", ["st-cls-dense-normalize", "st-mean-prompt-excluded"])
def test_a_request_may_name_a_prompt_as_sentence_transformers_encode(
    servers: Any, ref: Any, record: Any, name: str,
) -> None:
    server = servers[name]
    ours = _oip_embeddings(server, ref, ref.TEXTS, prompt_name="query")
    theirs = _reference(server.model_dir, ref.TEXTS, prompt_name="query")
    cos, norm = _assert_same(ours, theirs)
    # The prompt really changes the answer, so the comparison above can fail.
    assert not torch.allclose(ours, _oip_embeddings(server, ref, ref.TEXTS), atol=1e-4)
    record(POOLINGS[name][0], "embedding", f"{name} prompt 'query'", max(cos, norm))
    status, body = server.post(f"/v2/models/{name}/infer",
                               ref.oip(name, ["x"], prompt_name="nope"))
    assert status == 400 and "nope" in body["error"] and "query" in body["error"]


@pytest.mark.parametrize("arch", ["bert", "roberta", "modernbert"])
def test_openai_embeddings_equal_sentence_transformers(
    servers: Any, ref: Any, record: Any, arch: str,
) -> None:
    server = servers[f"plain-{arch}"]
    status, body = server.post("/v1/embeddings", {"input": ref.TEXTS, "model": server.name})
    assert status == 200, body
    assert body["object"] == "list" and body["model"] == server.name
    assert [d["index"] for d in body["data"]] == list(range(len(ref.TEXTS)))
    assert body["usage"]["prompt_tokens"] > len(ref.TEXTS)
    ours = torch.tensor([d["embedding"] for d in body["data"]])
    cos, norm = _assert_same(ours, _reference(server.model_dir, ref.TEXTS))
    record(arch, "embedding", "/v1/embeddings vs SentenceTransformer", max(cos, norm))
    status, one = server.post("/v1/embeddings", {"input": "hello world",
                                                 "encoding_format": "base64"})
    assert status == 200
    raw = base64.b64decode(one["data"][0]["embedding"])
    decoded = torch.tensor(struct.unpack(f"<{len(raw) // 4}f", raw))
    assert torch.allclose(decoded, ours[0], atol=1e-6)


def test_openai_models_lists_the_served_model_and_wrong_names_are_404(servers: Any) -> None:
    server = servers["plain-bert"]
    status, body = server.served.get("/v1/models")
    assert status == 200 and [m["id"] for m in body["data"]] == ["plain-bert"]
    status, body = server.post("/v1/embeddings", {"input": "x", "model": "other"})
    assert status == 404 and "plain-bert" in body["error"]
    status, body = server.post("/v1/rerank", {"query": "q", "documents": ["d"]})
    assert status == 404 and "'embedding'" in body["error"]


def test_inputs_beyond_the_limit_are_truncated_or_refused_on_request(
    servers: Any, ref: Any,
) -> None:
    long_text = " ".join(["hello world"] * 200)
    for name in ("plain-roberta", "plain-bert"):
        server = servers[name]
        assert _oip_embeddings(server, ref, [long_text]).shape[0] == 1
        status, body = server.post(f"/v2/models/{name}/infer",
                                   ref.oip(name, [long_text], truncate=False))
        assert status == 400 and f"at most {ref.MAX_TOKENS}" in body["error"]
        status, body = server.post("/v1/embeddings", {"input": long_text, "truncate": False})
        assert status == 400 and "truncate" in body["error"]
        _, metrics = server.served.get("/metrics")
        assert 'route="/v2/models/{name}/infer"' in metrics and 'code="400"' in metrics
