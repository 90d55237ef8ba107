"""Reranking through the real `serve` process equals sentence-transformers' CrossEncoder on
the same files: every architecture, pairs encoded and truncated as pairs, the configured
activation, OIP (two inputs or [n, 2] rows) and /v1/rerank, and the validation gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from modeldeploy_contract import judge
from modeldeploy_contract.config import Validation

pytestmark = pytest.mark.slow

ARCHITECTURES = ("bert", "distilbert", "electra", "roberta", "xlm-roberta", "mpnet",
                 "deberta-v2", "modernbert")


def _cross_encoder_scores(model_dir: Path, query: str, documents: list[str]) -> list[float]:
    from sentence_transformers import CrossEncoder

    scores = CrossEncoder(str(model_dir), device="cpu").predict([(query, d) for d in documents])
    return [float(s) for s in scores]


def _identity_cross_encoder(target: Path, checkpoint: Path) -> Path:
    from sentence_transformers import CrossEncoder

    CrossEncoder(str(checkpoint), device="cpu", activation_fn=torch.nn.Identity()).save(
        str(target))
    return target


@pytest.fixture(scope="module")
def servers(ref: Any, start_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("rerank-models")
    models: dict[str, tuple[Path, str]] = {}
    for arch in ARCHITECTURES:
        models[f"rerank-{arch}"] = (
            ref.make_checkpoint(root / arch, arch, head="sequence", num_labels=1), "reranking")
    identity = ref.make_checkpoint(root / "identity-hf", "bert", head="sequence", num_labels=1,
                                   seed=3)
    models["rerank-identity"] = (_identity_cross_encoder(root / "identity", identity),
                                 "reranking")
    # The validation gate on a reranker: the expected order is the CrossEncoder's.
    expected = _cross_encoder_scores(models["rerank-bert"][0], ref.QUERY, ref.DOCUMENTS)
    order = sorted(range(len(expected)), key=lambda i: -expected[i])
    validation = {"input": ref.QUERY, "documents": ref.DOCUMENTS,
                  "expected": {"order": order, "scores": expected, "scoreTolerance": 1e-4}}
    return start_models(models, {"rerank-bert": {"validation": validation}})


def _oip_scores(server: Any, query: str, documents: list[str]) -> list[float]:
    status, body = server.post(f"/v2/models/{server.name}/infer", {"inputs": [
        {"name": "query", "datatype": "BYTES", "shape": [1], "data": [query]},
        {"name": "documents", "datatype": "BYTES", "shape": [len(documents)],
         "data": documents}]})
    assert status == 200, body
    (out,) = body["outputs"]
    assert out["name"] == "score" and out["shape"] == [len(documents)]
    return [float(x) for x in out["data"]]


@pytest.mark.parametrize("arch", [*ARCHITECTURES, "identity"])
def test_oip_rerank_scores_equal_cross_encoder(
    servers: Any, ref: Any, record: Any, arch: str,
) -> None:
    server = servers[f"rerank-{arch}"]
    ours = _oip_scores(server, ref.QUERY, ref.DOCUMENTS)
    theirs = _cross_encoder_scores(server.model_dir, ref.QUERY, ref.DOCUMENTS)
    worst = max(abs(a - b) for a, b in zip(ours, theirs, strict=True))
    assert worst <= 1e-4, (ours, theirs)
    if arch == "identity":  # raw logits: the same checkpoint without the config squashes them
        sigmoid = _cross_encoder_scores(server.model_dir.parent / "identity-hf", ref.QUERY,
                                        ref.DOCUMENTS)
        assert max(abs(a - b) for a, b in zip(ours, sigmoid, strict=True)) > 0.1
    else:
        assert all(0 < s < 1 for s in ours)
    record(arch, "reranking", "OIP vs CrossEncoder.predict (abs)", worst)


@pytest.mark.parametrize("arch", ["bert", "roberta", "modernbert"])
def test_v1_rerank_sorts_cuts_at_top_n_and_equals_cross_encoder(
    servers: Any, ref: Any, record: Any, arch: str,
) -> None:
    server = servers[f"rerank-{arch}"]
    theirs = _cross_encoder_scores(server.model_dir, ref.QUERY, ref.DOCUMENTS)
    status, body = server.post("/v1/rerank", {"query": ref.QUERY, "documents": ref.DOCUMENTS,
                                              "top_n": 3, "return_documents": True})
    assert status == 200, body
    wanted = sorted(range(len(theirs)), key=lambda i: -theirs[i])[:3]
    assert [r["index"] for r in body["results"]] == wanted
    assert [r["document"]["text"] for r in body["results"]] == [ref.DOCUMENTS[i] for i in wanted]
    worst = max(abs(r["relevance_score"] - theirs[r["index"]]) for r in body["results"])
    assert worst <= 1e-4
    status, unsorted = server.post("/v1/rerank", {"query": ref.QUERY,
                                                  "documents": ref.DOCUMENTS, "sort": False})
    assert [r["index"] for r in unsorted["results"]] == list(range(len(ref.DOCUMENTS)))
    record(arch, "reranking", "/v1/rerank vs CrossEncoder (abs)", worst)


def test_oip_accepts_pairs_as_n_by_2_rows(servers: Any, ref: Any) -> None:
    server = servers["rerank-roberta"]
    rows = [[ref.QUERY, d] for d in ref.DOCUMENTS]
    status, body = server.post("/v2/models/rerank-roberta/infer", {"inputs": [
        {"name": "pairs", "datatype": "BYTES", "shape": [len(rows), 2], "data": rows}]})
    assert status == 200, body
    assert body["outputs"][0]["data"] == pytest.approx(
        _oip_scores(server, ref.QUERY, ref.DOCUMENTS), abs=1e-6)
    status, body = server.post("/v2/models/rerank-roberta/infer", ref.oip("x", ["just text"]))
    assert status == 400 and "query" in body["error"]


def test_a_reranker_with_a_validation_goes_ready_and_passes_the_operators_check(
    servers: Any, ref: Any,
) -> None:
    server = servers["rerank-bert"]
    _, status = server.served.get("/status")
    assert status["validation"]["passed"] is True, status
    # The operator's check: the contract's request, the contract's verdict.
    scores = _cross_encoder_scores(server.model_dir, ref.QUERY, ref.DOCUMENTS)
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    validation = Validation.model_validate({
        "input": ref.QUERY, "documents": ref.DOCUMENTS, "expected": {"order": order}})
    code, answer = server.post("/v2/models/rerank-bert/infer",
                               judge.validation_request(validation))
    assert code == 200
    assert judge.check_answer(validation.expected, answer).passed is True
    wrong = Validation.model_validate({
        "input": ref.QUERY, "documents": ref.DOCUMENTS,
        "expected": {"order": list(reversed(order))}})
    assert judge.check_answer(wrong.expected, answer).passed is False
