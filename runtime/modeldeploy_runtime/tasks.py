"""The four tasks over a loaded model: embedding, reranking, text- and token-classification.

Each answers as the reference library would for the same files: sentence-transformers'
SentenceTransformer (embedding) and CrossEncoder (reranking), transformers' pipelines
(text-classification, token-classification with aggregation_strategy="simple").
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from starlette.concurrency import run_in_threadpool
from torch import Tensor

from modeldeploy_runtime import pooling
from modeldeploy_runtime.batching import Batcher, Work
from modeldeploy_runtime.pooling import PoolingSettings
from modeldeploy_runtime.protocol import BadRequest, Inputs, Options
from modeldeploy_runtime.tokenizer import Row, TextEncoder

# Model inputs (input_ids, attention_mask[, token_type_ids]) -> last hidden states [B, T, H]
# (embedding) or logits [B, labels] (classification, reranking).
Forward = Callable[[dict[str, Tensor]], Tensor]
# Release cached CUDA blocks after a batch of more tokens than this, so one large request
# does not keep the allocator's peak reserved for the life of the pod.
_LARGE_BATCH_TOKENS = 16384
DEFAULTS = Options()


@dataclass(frozen=True)
class Output:
    """One named output tensor, already flattened for the wire."""

    name: str
    datatype: str
    shape: list[int]
    data: list[float] | list[str]


@dataclass(frozen=True)
class SentenceHead:
    """Pooling, then Dense layers (with their activations), then optional L2 normalisation."""

    pooling: PoolingSettings = field(default_factory=PoolingSettings)
    dense: tuple[tuple[torch.nn.Linear, str], ...] = ()
    normalize: bool = False
    lowercase: bool = False
    prompts: Mapping[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None


@dataclass
class Pipeline:
    """Tokenizer + forward function for one task; safe to call from many threads."""

    task: str
    tokenizer: TextEncoder
    forward: Forward
    device: torch.device
    labels: Sequence[str] = ()
    sentence: SentenceHead = field(default_factory=SentenceHead)
    multi_label: bool = False  # sigmoid per label instead of softmax over labels
    score_activation: str = "sigmoid"  # reranking: CrossEncoder's activation_fn
    tagger: Any = None  # token-classification: a transformers TokenClassificationPipeline
    # transformers' token-classification pipeline keeps per-call state: one call at a time.
    # The encoder's own forward passes run concurrently (the batcher's forward threads): a
    # module under inference_mode only reads its weights.
    _tagger_lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, features: dict[str, Tensor]) -> Tensor:
        out = self.forward(features).float()
        if self.device.type == "cuda" and features["input_ids"].numel() > _LARGE_BATCH_TOKENS:
            torch.cuda.empty_cache()
        return out

    def _prompt(self, name: str | None) -> str:
        name = name if name is not None else self.sentence.default_prompt_name
        if name is None:
            return ""
        if name not in self.sentence.prompts:
            known = ", ".join(sorted(self.sentence.prompts)) or "none"
            raise BadRequest(
                f"prompt_name {name!r} is not in config_sentence_transformers.json; "
                f"known prompts: {known}"
            )
        return self.sentence.prompts[name]

    # Building work (tokenisation: any thread) and computing it (the forward thread).

    def embedding_work(self, texts: Sequence[str], options: Options = DEFAULTS) -> Work:
        """Texts tokenised for `embed`; rows of equal prompt length share forward passes."""
        prompt = self._prompt(options.prompt_name)
        texts = [prompt + t for t in texts]
        if self.sentence.lowercase:
            texts = [t.lower() for t in texts]
        rows = self.tokenizer.rows(texts, None, options.truncate)
        prompt_length = 0
        if prompt and not self.sentence.pooling.include_prompt:
            # The prompt's own trailing [SEP]/</s> is not part of the text's prefix.
            prompt_length = len(self.tokenizer.rows([prompt], None, True)[0]["input_ids"]) - 1

        def compute(batch: Sequence[Row]) -> Tensor:
            with torch.inference_mode():
                features = self.tokenizer.collate(batch, self.device)
                hidden = self._run(features)
                vectors = pooling.pool(self.sentence.pooling, hidden,
                                       features["attention_mask"], prompt_length)
                for linear, activation in self.sentence.dense:
                    vectors = pooling.apply_activation(activation, linear(vectors))
                if self.sentence.normalize:
                    vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
                return vectors.cpu()

        return Work((id(self), "embedding", prompt_length), rows, compute)

    def logits_work(self, texts: Sequence[str], pairs: Sequence[str] | None,
                    options: Options = DEFAULTS) -> Work:
        """Texts (or query/document pairs) tokenised for the classification head."""
        return Work((id(self), "logits"), self.tokenizer.rows(texts, pairs, options.truncate),
                    self._logits)

    def _logits(self, batch: Sequence[Row]) -> Tensor:
        with torch.inference_mode():
            return self._run(self.tokenizer.collate(batch, self.device)).cpu()

    def work(self, inputs: Inputs) -> Work:
        """The request's rows, tokenised (raises BadRequest for a too-long input)."""
        if self.task == "embedding":
            return self.embedding_work(inputs.texts, inputs.options)
        return self.logits_work(inputs.queries or inputs.texts,
                                inputs.texts if inputs.queries is not None else None,
                                inputs.options)

    # From computed rows to answers.

    def scores(self, logits: Tensor) -> list[float]:
        """Reranking logits [n, 1] as CrossEncoder's scores (its activation applied)."""
        if logits.shape[-1] != 1:
            raise BadRequest(
                f"this model has {logits.shape[-1]} outputs per pair; reranking needs 1 "
                "(a cross-encoder with num_labels=1)"
            )
        scores = pooling.apply_activation(self.score_activation, logits[:, 0])
        return [float(s) for s in scores.tolist()]

    def _probabilities(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)

    def embed(self, texts: Sequence[str], options: Options = DEFAULTS) -> Tensor:
        """Sentence embeddings [n, dim] in float32 on the CPU, as SentenceTransformer.encode."""
        work = self.embedding_work(texts, options)
        return work.compute(work.rows)

    def rerank(self, queries: Sequence[str], documents: Sequence[str],
               options: Options = DEFAULTS) -> list[float]:
        """One relevance score per (query, document) pair, as CrossEncoder.predict."""
        work = self.logits_work(queries, documents, options)
        return self.scores(work.compute(work.rows))

    def probabilities(self, texts: Sequence[str], options: Options = DEFAULTS) -> Tensor:
        """[n, labels]: softmax, or sigmoid per label for multi-label models."""
        work = self.logits_work(texts, None, options)
        return self._probabilities(work.compute(work.rows))

    def classify(self, texts: Sequence[str],
                 options: Options = DEFAULTS) -> tuple[list[str], list[float]]:
        """The most likely label per text and its score."""
        return self._best(self.probabilities(texts, options))

    def _best(self, probs: Tensor) -> tuple[list[str], list[float]]:
        scores, index = probs.max(dim=-1)
        return [self.labels[i] for i in index.tolist()], [float(s) for s in scores.tolist()]

    def ranked(self, texts: Sequence[str], top_k: int,
               options: Options = DEFAULTS) -> list[list[tuple[str, float]]]:
        """The top_k labels per text (0: all), best first, with scores."""
        return self._top(self.probabilities(texts, options), top_k)

    def _top(self, probs: Tensor, top_k: int) -> list[list[tuple[str, float]]]:
        k = probs.shape[-1] if top_k == 0 else min(top_k, probs.shape[-1])
        values, index = probs.topk(k, dim=-1)
        return [[(self.labels[i], float(v)) for i, v in zip(row_i, row_v, strict=True)]
                for row_i, row_v in zip(index.tolist(), values.tolist(), strict=True)]

    def entities(self, texts: Sequence[str]) -> list[list[dict[str, Any]]]:
        """Entities per text: entity_group, score, word, start, end (character offsets)."""
        with self._tagger_lock, torch.inference_mode():
            found = self.tagger(list(texts))
        rows = [found] if texts and found and isinstance(found[0], dict) else found
        return [[{"entity_group": str(e["entity_group"]), "score": float(e["score"]),
                  "word": str(e["word"]), "start": int(e["start"]), "end": int(e["end"])}
                 for e in row] for row in rows]

    def warm(self, texts: Sequence[str]) -> None:
        """One pass of the task over `texts` (warm-up)."""
        if self.task == "reranking":
            self.rerank(list(texts), list(texts))
        else:
            self.run(Inputs(None, list(texts), None, Options()))

    def run(self, inputs: Inputs) -> list[Output]:
        """Run the task here and now (warm-up, tests) as Open Inference Protocol outputs."""
        if self.task == "token-classification":
            return self.shape(inputs, self.entities(inputs.texts))
        work = self.work(inputs)
        return self.shape(inputs, work.compute(work.rows))

    async def infer(self, inputs: Inputs, batcher: Batcher) -> list[Output]:
        """Run the task through the batcher: tokenised in the thread pool, computed on the
        forward thread together with other requests, shaped here."""
        if self.task == "token-classification":
            # transformers' pipeline tokenises and aggregates itself: it runs alone.
            found = await batcher.call(partial(self.entities, inputs.texts), len(inputs.texts))
            return self.shape(inputs, found)
        work = await run_in_threadpool(self.work, inputs)
        return self.shape(inputs, await batcher.submit(work))

    def shape(self, inputs: Inputs, result: Any) -> list[Output]:
        """Computed rows (a Tensor; entity lists for token-classification) as OIP outputs."""
        options, n = inputs.options, len(inputs.texts)
        if self.task == "embedding":
            flat: list[float] = result.flatten().tolist()
            return [Output("embedding", "FP32", [n, int(result.shape[1])], flat)]
        if self.task == "reranking":
            return [Output("score", "FP32", [n], self.scores(result))]
        if self.task == "token-classification":
            rows = [json.dumps(row) for row in result]
            return [Output("entities", "BYTES", [n], rows)]
        probs = self._probabilities(result)
        if options.top_k is None:
            labels, scores = self._best(probs)
            return [Output("label", "BYTES", [n], labels), Output("score", "FP32", [n], scores)]
        ranked = self._top(probs, options.top_k)
        k = len(ranked[0])
        return [Output("label", "BYTES", [n, k], [lab for row in ranked for lab, _ in row]),
                Output("score", "FP32", [n, k], [s for row in ranked for _, s in row])]
