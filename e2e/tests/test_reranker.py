"""Operator e2e: a cross-encoder reranker rolled out with an order validation, answering
/v1/rerank through its Service as sentence-transformers' CrossEncoder does.

Given a tiny random BERT cross-encoder (made here, saved to MinIO) and a ModelDeployment
with task reranking whose validation expects the CrossEncoder's document order, when it is
applied, it becomes Available with the pod's and the operator's validation passed, and every
ready endpoint behind the Service ranks the documents as CrossEncoder does.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modeldeploy_e2e import workload
from modeldeploy_e2e.operator_process import OperatorProcess
from modeldeploy_e2e.s3 import MinioServer, upload_directory

if TYPE_CHECKING:
    from modeldeploy_e2e.opcluster import Cluster

pytest_plugins = ["modeldeploy_e2e.operator_fixtures"]
NAME = "reranker"
QUERY = "where does john live"
DOCUMENTS = ["john lives in paris", "the quick brown fox", "mary lives in berlin",
             "a very good movie"]
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "john", "lives", "in", "paris",
         "where", "does", "live", "the", "quick", "brown", "fox", "mary", "berlin", "a",
         "very", "good", "movie"]


def _tiny_cross_encoder(target: Path) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    target.mkdir(parents=True)
    (target / "vocab.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    BertTokenizer(vocab_file=str(target / "vocab.txt"), model_max_length=64).save_pretrained(
        target)
    torch.manual_seed(7)
    config = BertConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=64, num_labels=1)
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(20)  # spread the random scores apart
    model.save_pretrained(target, safe_serialization=True)
    return target


def _cross_encoder_scores(model_dir: Path) -> list[float]:
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(model_dir), device="cpu")
    return [float(s) for s in model.predict([(QUERY, d) for d in DOCUMENTS])]


def _manifest(namespace: str, endpoint: str, order: list[int],
              scores: list[float]) -> dict[str, Any]:
    manifest = copy.deepcopy(workload.example("minilm-embedding-rolling.yaml"))
    manifest["metadata"] = {"name": NAME, "namespace": namespace}
    spec = manifest["spec"]
    spec["replicas"] = 1
    spec["model"]["name"] = NAME
    spec["model"]["source"]["s3"].update(
        {"bucket": "models", "prefix": f"{NAME}/v1/", "endpoint": endpoint,
         "credentialsSecret": "modeldeploy-s3"})
    spec["runtime"]["task"] = "reranking"
    spec["runtime"]["warmup"] = {"inputs": ["john lives in paris"], "iterations": 1}
    spec["validation"] = {
        "input": QUERY, "documents": DOCUMENTS,
        "expected": {"order": order, "scores": scores, "scoreTolerance": 0.001},
        "timeoutSeconds": 30,
    }
    return manifest


def _rerank(ip: str, port: int, netns: str | None) -> dict[str, Any]:
    return workload.post_json(ip, port, "/v1/rerank",
                              {"query": QUERY, "documents": DOCUMENTS, "top_n": 3},
                              netns=netns)


def test_a_reranker_rolls_out_with_validation_and_answers_v1_rerank_through_its_service(
    op_cluster: Cluster, minilm_s3: MinioServer, md_namespace: str,
    operator_proc: OperatorProcess, tmp_path: Path,
) -> None:
    model_dir = _tiny_cross_encoder(tmp_path / "reranker")
    upload_directory(minilm_s3, "models", f"{NAME}/v1", model_dir)
    scores = _cross_encoder_scores(model_dir)
    order = sorted(range(len(scores)), key=lambda i: -scores[i])

    op_cluster.apply(_manifest(md_namespace, minilm_s3.endpoint, order, scores))
    status = workload.wait_for_status(
        op_cluster.client, md_namespace, NAME, workload.available_at("v1"), 300,
        "reranker v1 Available",
    )

    assert status["lastKnownGoodVersion"] == "v1"
    endpoints = workload.service_endpoints(op_cluster.client, md_namespace, NAME)
    assert endpoints, "no ready endpoint behind the Service"
    for ip, port in endpoints:
        runtime = workload.runtime_status(ip, port, op_cluster.netns)
        assert runtime["task"] == "reranking"
        assert runtime["validation"]["passed"] is True, runtime["validation"]
        answer = _rerank(ip, port, op_cluster.netns)
        assert [r["index"] for r in answer["results"]] == order[:3]
        for result in answer["results"]:
            assert abs(result["relevance_score"] - scores[result["index"]]) <= 1e-4
