"""Dynamic batching through the real `serve` process: many concurrent HTTP clients, each
with its own texts of mixed lengths, get exactly their own rows back, equal to the reference
libraries' answers (SentenceTransformer, transformers' pipeline, CrossEncoder), while the
server's metrics show that their requests shared forward passes. A full queue answers 503
with Retry-After; a request past its deadline gets an error, never a late answer."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import torch

pytestmark = pytest.mark.slow

CLIENTS = 24
LABELS = {0: "joy", 1: "anger", 2: "fear", 3: "surprise"}
# Long enough that every request of the concurrent burst queues behind the first batch.
GATHER = {"batching": {"maxWaitMilliseconds": 300}}


def _with_fast_tokenizer(model_dir: Path) -> Path:
    """Add tokenizer.json, so a BERT checkpoint takes the runtime's compact tokenizer path."""
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(str(model_dir))
    return model_dir


@pytest.fixture(scope="module")
def servers(ref: Any, start_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("batched-models")
    labels = {"id2label": LABELS, "label2id": {v: k for k, v in LABELS.items()}}
    models = {
        "batch-bert": (_with_fast_tokenizer(ref.make_checkpoint(root / "bert", "bert")),
                       "embedding"),
        "batch-roberta": (ref.make_checkpoint(root / "roberta", "roberta"), "embedding"),
        "batch-cls": (ref.make_checkpoint(root / "cls", "bert", head="sequence", **labels),
                      "text-classification"),
        "batch-rerank": (ref.make_checkpoint(root / "rerank", "bert", head="sequence",
                                             num_labels=1), "reranking"),
    }
    return start_models(models, {name: GATHER for name in models})


def _requests(ref: Any, seed: int) -> list[list[str]]:
    """CLIENTS requests of 1-4 texts each, short and long (truncated) mixed."""
    rng = random.Random(seed)
    words = " ".join(ref.TEXTS).lower().split()
    return [[" ".join(rng.choice(words) for _ in range(rng.choice((2, 5, 12, 40, 90))))
             for _ in range(rng.randint(1, 4))] for _ in range(CLIENTS)]


def _concurrently(call: Callable[[int], Any], n: int) -> list[Any]:
    """call(0..n-1) from n threads released together; results in index order."""
    results: list[Any] = [None] * n
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        results[i] = call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def _metric(server: Any, name: str) -> float:
    _, text = server.served.get("/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def _forward_passes(server: Any) -> tuple[float, float]:
    """(forward passes, texts) the batcher has run so far."""
    return (_metric(server, "modeldeploy_batch_size_texts_count"),
            _metric(server, "modeldeploy_batch_size_texts_sum"))


def _shared_passes(server: Any, before: tuple[float, float], requests: int) -> None:
    passes, texts = (a - b for a, b in zip(_forward_passes(server), before, strict=True))
    # Fewer passes than requests: some pass ran rows of several clients' requests.
    assert 0 < passes < requests, (passes, texts)


@pytest.mark.parametrize("name", ["batch-bert", "batch-roberta"])
def test_concurrent_embedding_requests_share_forward_passes_and_each_gets_its_own_rows(
    servers: Any, ref: Any, record: Any, name: str,
) -> None:
    from sentence_transformers import SentenceTransformer

    server = servers[name]
    requests = _requests(ref, seed=len(name))
    before = _forward_passes(server)

    def embed(i: int) -> Any:
        if i % 2:  # both APIs go through the same queue
            return server.post("/v1/embeddings", {"input": requests[i]})
        return server.post(f"/v2/models/{name}/infer", ref.oip(name, requests[i]))

    answers = _concurrently(embed, CLIENTS)
    _shared_passes(server, before, CLIENTS)
    model = SentenceTransformer(str(server.model_dir), device="cpu")
    worst = 0.0
    for i, (status, body) in enumerate(answers):
        assert status == 200, body
        if i % 2:
            ours = torch.tensor([d["embedding"] for d in body["data"]])
            assert [d["index"] for d in body["data"]] == list(range(len(requests[i])))
        else:
            (out,) = body["outputs"]
            ours = torch.tensor(out["data"]).view(out["shape"])
        theirs = torch.from_numpy(model.encode(requests[i]))
        assert ours.shape == theirs.shape
        cosine = torch.nn.functional.cosine_similarity(ours, theirs)
        assert cosine.min().item() >= 0.9999, (i, cosine.tolist())
        assert torch.allclose(ours, theirs, atol=1e-4), i
        worst = max(worst, (ours - theirs).abs().max().item())
    record(name, "embedding", f"{CLIENTS} concurrent clients, batched", worst)


def test_concurrent_classification_requests_equal_the_transformers_pipeline(
    servers: Any, ref: Any, record: Any,
) -> None:
    from transformers import pipeline

    server = servers["batch-cls"]
    requests = _requests(ref, seed=7)
    before = _forward_passes(server)
    answers = _concurrently(lambda i: server.post(
        "/v2/models/batch-cls/infer", ref.oip("batch-cls", requests[i], top_k=0)), CLIENTS)
    _shared_passes(server, before, CLIENTS)
    classify = pipeline("text-classification", model=str(server.model_dir), device="cpu",
                        top_k=None)
    worst = 0.0
    for i, (status, body) in enumerate(answers):
        assert status == 200, body
        labels, scores = body["outputs"]
        k = labels["shape"][1]
        for row, expected in enumerate(classify(requests[i], truncation=True)):
            got = dict(zip(labels["data"][row * k:(row + 1) * k],
                           scores["data"][row * k:(row + 1) * k], strict=True))
            want = {r["label"]: float(r["score"]) for r in expected}
            assert got.keys() == want.keys()
            worst = max(worst, max(abs(got[lab] - want[lab]) for lab in want))
            assert labels["data"][row * k] == max(want, key=lambda lab: want[lab])
    assert worst <= 1e-5
    record("bert", "text-classification", f"{CLIENTS} concurrent clients, batched", worst)


def test_concurrent_rerank_requests_equal_the_cross_encoder(
    servers: Any, ref: Any, record: Any,
) -> None:
    from sentence_transformers import CrossEncoder

    server = servers["batch-rerank"]
    requests = _requests(ref, seed=11)
    queries = [f"where does {w} live" for w in ("john", "mary", "the dog", "a fox")]
    before = _forward_passes(server)
    answers = _concurrently(lambda i: server.post("/v1/rerank", {
        "query": queries[i % 4], "documents": requests[i], "sort": False}), CLIENTS)
    _shared_passes(server, before, CLIENTS)
    model = CrossEncoder(str(server.model_dir), device="cpu")
    worst = 0.0
    for i, (status, body) in enumerate(answers):
        assert status == 200, body
        ours = [r["relevance_score"] for r in body["results"]]
        theirs = model.predict([(queries[i % 4], d) for d in requests[i]]).tolist()
        assert [r["index"] for r in body["results"]] == list(range(len(requests[i])))
        worst = max(worst, max(abs(a - b) for a, b in zip(ours, theirs, strict=True)))
    assert worst <= 1e-5
    record("bert", "reranking", f"{CLIENTS} concurrent clients, batched", worst)


def _raw_post(base: str, path: str, body: dict[str, Any]) -> tuple[int, Message, Any]:
    """(status, headers (case-insensitive), JSON body)."""
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, response.headers, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.load(error)


@pytest.fixture(scope="module")
def busy(ref: Any, start_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Two servers whose every forward pass takes 4 s (the test knob), each with
    BUSY_THREADS forward threads: one with a queue of 4 texts, one with a 1 s request
    deadline."""
    root = tmp_path_factory.mktemp("busy-models")
    checkpoint = _with_fast_tokenizer(ref.make_checkpoint(root / "bert", "bert"))
    with pytest.MonkeyPatch.context() as patch:  # the processes inherit it as they start
        patch.setenv("MODELDEPLOY_DEBUG_FORWARD_DELAY_SECONDS", "4")
        patch.setenv("MODELDEPLOY_FORWARD_THREADS", str(BUSY_THREADS))
        return start_models(
            {"small-queue": (checkpoint, "embedding"),
             "short-deadline": (checkpoint, "embedding")},
            {"small-queue": {"batching": {"maxQueuedTexts": 4}},
             "short-deadline": {"batching": {"requestTimeoutSeconds": 1}}})


# Two forward threads, whatever this machine's CPUs: the requests that keep the model busy
# must occupy every one of them before anything queues.
BUSY_THREADS = 2


def _taken(server: Any, count: int) -> bool:
    """True once `count` requests have left the queue for a forward pass."""
    return _metric(server, "modeldeploy_batch_queue_seconds_count") >= count


def test_a_full_queue_answers_503_with_retry_after_and_keeps_what_it_queued(
    busy: Any, ref: Any,
) -> None:
    server = busy["small-queue"]
    base = server.served.base
    answers: dict[str, Any] = {}

    def send(label: str, texts: list[str]) -> None:
        answers[label] = _raw_post(base, "/v1/embeddings", {"input": texts})

    running = [threading.Thread(target=send, args=(f"running {i}", [f"hello world {i}"]))
               for i in range(BUSY_THREADS)]
    for taken, thread in enumerate(running, start=1):  # a forward thread each, busy 4 s
        thread.start()
        assert server.served.wait_until(lambda n=taken: _taken(server, n), timeout=30)
    queued = threading.Thread(target=send, args=("queued", ["a", "b", "c", "d"]))
    queued.start()
    assert server.served.wait_until(
        lambda: _metric(server, "modeldeploy_batch_queue_texts") == 4, timeout=30)

    status, headers, body = _raw_post(base, "/v1/embeddings", {"input": "one too many"})
    assert status == 503 and body["reason"] == "QueueFull", body
    assert "maxQueuedTexts=4" in body["error"]
    assert int(headers.get("Retry-After", "0")) >= 1
    for thread in (*running, queued):
        thread.join(60)
    assert [answers[f"running {i}"][0] for i in range(BUSY_THREADS)] == [200] * BUSY_THREADS
    assert answers["queued"][0] == 200
    assert len(answers["queued"][2]["data"]) == 4
    # Once drained, the queue takes requests again.
    assert _raw_post(base, "/v1/embeddings", {"input": "again"})[0] == 200


def test_a_request_past_its_deadline_gets_an_error_not_a_late_answer(
    busy: Any, ref: Any,
) -> None:
    server = busy["short-deadline"]
    base = server.served.base
    before = _forward_passes(server)
    answers: list[Any] = []

    def send(text: str) -> None:
        answers.append(_raw_post(base, "/v2/models/short-deadline/infer",
                                 ref.oip("short-deadline", [text])))

    running = [threading.Thread(target=send, args=(f"running {i}",))
               for i in range(BUSY_THREADS)]
    for taken, thread in enumerate(running, start=1):  # each runs 4 s, past its 1 s deadline
        thread.start()
        assert server.served.wait_until(lambda n=taken: _taken(server, n), timeout=30)
    queued = threading.Thread(target=send, args=("queued",))
    queued.start()  # waits behind them, and expires in the queue
    for thread in (*running, queued):
        thread.join(60)
    assert len(answers) == BUSY_THREADS + 1
    for status, headers, body in answers:
        assert status == 503 and body["reason"] == "DeadlineExceeded", body
        assert "requestTimeoutSeconds=1" in body["error"]
        assert headers.get("Retry-After") is not None
    # The passes in progress finish (their answers dropped); the expired one never runs.
    assert server.served.wait_until(
        lambda: _metric(server, "modeldeploy_batch_queue_texts") == 0, timeout=30)
    time.sleep(0.5)
    passes, _ = (a - b for a, b in zip(_forward_passes(server), before, strict=True))
    assert passes == BUSY_THREADS
