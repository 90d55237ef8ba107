"""text-classification and token-classification through the real `serve` process equal
transformers' pipelines on the same files: single-label (softmax), multi-label (sigmoid per
problem_type), top_k, and NER entities with character offsets (aggregation "simple")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_contract import judge
from modeldeploy_contract.config import Validation

pytestmark = pytest.mark.slow

LABELS = {0: "joy", 1: "anger", 2: "fear", 3: "surprise"}
NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
# name -> (architecture, task, multi-label)
MODELS = {
    "cls-bert": ("bert", "text-classification", False),
    "cls-deberta-v2": ("deberta-v2", "text-classification", False),
    "cls-roberta-multi": ("roberta", "text-classification", True),
    "cls-modernbert-multi": ("modernbert", "text-classification", True),
    "ner-bert": ("bert", "token-classification", False),
    "ner-roberta": ("roberta", "token-classification", False),
    "ner-electra": ("electra", "token-classification", False),
}


@pytest.fixture(scope="module")
def servers(ref: Any, start_models: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("classifiers")
    models: dict[str, tuple[Path, str]] = {}
    for name, (arch, task, multi) in MODELS.items():
        labels = NER_LABELS if task == "token-classification" else LABELS
        extra: dict[str, Any] = {"id2label": labels,
                                 "label2id": {v: k for k, v in labels.items()}}
        if multi:
            extra["problem_type"] = "multi_label_classification"
        head = "token" if task == "token-classification" else "sequence"
        models[name] = (ref.make_checkpoint(root / name, arch, head=head, **extra), task)
    return start_models(models)


def _pipeline_scores(model_dir: Path, texts: list[str]) -> list[dict[str, float]]:
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(model_dir), device="cpu", top_k=None)
    return [{r["label"]: float(r["score"]) for r in row}
            for row in classify(texts, truncation=True)]


@pytest.mark.parametrize("name", [n for n, m in MODELS.items() if m[1] == "text-classification"])
def test_classification_scores_equal_the_transformers_pipeline(
    servers: Any, ref: Any, record: Any, name: str,
) -> None:
    server = servers[name]
    theirs = _pipeline_scores(server.model_dir, ref.TEXTS)
    status, body = server.post(f"/v2/models/{name}/infer", ref.oip(name, ref.TEXTS, top_k=0))
    assert status == 200, body
    labels, scores = body["outputs"]
    k = len(LABELS)
    assert labels["shape"] == [len(ref.TEXTS), k]
    worst = 0.0
    for row, expected in enumerate(theirs):
        got = dict(zip(labels["data"][row * k:(row + 1) * k],
                       scores["data"][row * k:(row + 1) * k], strict=True))
        assert set(got) == set(expected)
        worst = max(worst, *(abs(got[label] - expected[label]) for label in expected))
        # best first, as the pipeline sorts them
        assert labels["data"][row * k] == max(expected, key=lambda lab: expected[lab])
    assert worst <= 1e-5
    multi = MODELS[name][2]
    sums = [sum(scores["data"][r * k:(r + 1) * k]) for r in range(len(ref.TEXTS))]
    if not multi:  # softmax sums to one; independent sigmoids do not
        assert sums == pytest.approx([1.0] * len(sums), abs=1e-5)
    else:
        assert any(abs(s - 1.0) > 0.05 for s in sums)
    record(MODELS[name][0], "text-classification",
           f"{'multi' if multi else 'single'}-label scores vs pipeline (abs)", worst)
    status, top = server.post(f"/v2/models/{name}/infer", ref.oip(name, ref.TEXTS, top_k=2))
    assert top["outputs"][0]["shape"] == [len(ref.TEXTS), 2]
    status, best = server.post(f"/v2/models/{name}/infer", ref.oip(name, ref.TEXTS))
    assert best["outputs"][0]["data"] == labels["data"][::k]


def test_multi_label_validation_is_judged_by_the_contract(servers: Any, ref: Any) -> None:
    server = servers["cls-roberta-multi"]
    text = ref.TEXTS[2]
    expected = sorted(label for label, score in _pipeline_scores(server.model_dir, [text])[0]
                      .items() if score >= 0.5)
    for wanted, verdict in ((expected, True), ([*expected, "nope"], False)):
        validation = Validation.model_validate({"input": text, "expected": {"labels": wanted}})
        status, answer = server.post("/v2/models/cls-roberta-multi/infer",
                                     judge.validation_request(validation))
        assert status == 200
        assert judge.check_answer(validation.expected, answer).passed is verdict


@pytest.mark.parametrize("name", [n for n, m in MODELS.items() if m[1] == "token-classification"])
def test_entities_equal_the_transformers_ner_pipeline_with_simple_aggregation(
    servers: Any, ref: Any, record: Any, name: str,
) -> None:
    from transformers import pipeline

    server = servers[name]
    tagger = pipeline("token-classification", model=str(server.model_dir), device="cpu",
                      aggregation_strategy="simple")
    theirs = tagger(ref.TEXTS)
    status, body = server.post(f"/v2/models/{name}/infer", ref.oip(name, ref.TEXTS))
    assert status == 200, body
    (out,) = body["outputs"]
    assert out["name"] == "entities" and out["shape"] == [len(ref.TEXTS)]
    worst, found = 0.0, 0
    for text, row, expected in zip(ref.TEXTS, out["data"], theirs, strict=True):
        ours = json.loads(row)
        key = [(e["entity_group"], e["start"], e["end"], e["word"]) for e in ours]
        assert key == [(e["entity_group"], e["start"], e["end"], e["word"]) for e in expected]
        for mine, their in zip(ours, expected, strict=True):
            worst = max(worst, abs(mine["score"] - float(their["score"])))
            assert mine["entity_group"] in {"PER", "LOC"}
            assert text[mine["start"]:mine["end"]].strip()
        found += len(ours)
    assert found > 0  # random weights still tag something, so the comparison is not vacuous
    assert worst <= 1e-5
    record(MODELS[name][0], "token-classification",
           f"{found} entities (group, offsets, word) + score", worst)
    entities = json.loads(out["data"][2])
    validation = Validation.model_validate({"input": ref.TEXTS[2], "expected": {"entities": [
        {"label": e["entity_group"], "start": e["start"], "end": e["end"]} for e in entities]}})
    status, answer = server.post(f"/v2/models/{name}/infer",
                                 judge.validation_request(validation))
    assert judge.check_answer(validation.expected, answer).passed is True
