"""The known input and the answer a correct model gives: `spec.validation`, per task."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    ConfigDict,
    Field,
    model_validator,
)

from modeldeploy_operator.api.runtime import EXPECTED_TASK, OmitNewDefaults
from modeldeploy_operator.api.schema import (
    ApiModel,
    cel,
)


class ExpectedEntity(ApiModel):
    """One entity the token classifier must find."""

    label: Annotated[
        str, Field(description="Entity group without B-/I- prefix, e.g. PER.", min_length=1,
                   max_length=128)
    ]
    start: Annotated[int, Field(description="Character offset where it starts.", ge=0)]
    end: Annotated[int, Field(description="Character offset just past it.", ge=1)]


EXPECTED_KEYS = tuple(EXPECTED_TASK)


class ExpectedOutput(OmitNewDefaults):
    """What the model must answer for the validation input: exactly one of label, labels,
    embedding, order, entities, text, contains or pattern."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    " + ".join(f"(has(self.{k}) ? 1 : 0)" for k in EXPECTED_KEYS) + " == 1",
                    f"exactly one of {', '.join(EXPECTED_KEYS[:-1])} or {EXPECTED_KEYS[-1]} "
                    "must be set",
                ),
                cel(
                    "!has(self.scores) || has(self.order)",
                    "scores needs order (reranking)",
                    ".scores",
                ),
                cel(
                    "!has(self.scores) || !has(self.order) "
                    "|| size(self.scores) == size(self.order)",
                    "scores needs one score per document of order",
                    ".scores",
                ),
            ]
        }
    )
    _new_fields = ("labels", "label_threshold", "order", "scores", "score_tolerance",
                   "entities", "text", "contains", "pattern")

    label: Annotated[
        str | None,
        Field(description="Exact label expected (text-classification).", max_length=256),
    ] = None
    labels: Annotated[
        list[Annotated[str, Field(max_length=256)]] | None,
        Field(
            description=(
                "Every label scoring >= labelThreshold, no other (multi-label "
                "text-classification)."
            ),
            max_length=64,
        ),
    ] = None
    label_threshold: Annotated[
        float, Field(description="Score at which a label counts as predicted.", gt=0.0, lt=1.0)
    ] = 0.5
    embedding: Annotated[
        list[float] | None,
        Field(description="Expected embedding (embedding task).", min_length=1, max_length=8192),
    ] = None
    min_cosine_similarity: Annotated[
        float,
        Field(description="Pass when cosine(expected, actual) >= this.", gt=0.0, le=1.0),
    ] = 0.99
    order: Annotated[
        list[Annotated[int, Field(ge=0, le=63)]] | None,
        Field(
            description=(
                "Reranking: indices of validation.documents, most relevant first."
            ),
            min_length=1,
            max_length=64,
        ),
    ] = None
    scores: Annotated[
        list[float] | None,
        Field(
            description="Reranking: the expected score of each document, in input order.",
            max_length=64,
        ),
    ] = None
    score_tolerance: Annotated[
        float, Field(description="Largest allowed |score - expected score|.", ge=0.0, le=1.0)
    ] = 0.01
    entities: Annotated[
        list[ExpectedEntity] | None,
        Field(description="Token-classification: every entity found, no other.",
              max_length=256),
    ] = None
    text: Annotated[
        str | None,
        Field(description="Text-generation: the exact greedy completion of input.",
              max_length=8192),
    ] = None
    contains: Annotated[
        str | None,
        Field(description="Text-generation: a substring of the greedy completion.",
              min_length=1, max_length=8192),
    ] = None
    pattern: Annotated[
        str | None,
        Field(description="Text-generation: a regular expression found in the greedy "
                          "completion (Python re.search).", min_length=1, max_length=1024),
    ] = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ExpectedOutput:
        given = [k for k in EXPECTED_KEYS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "exactly one of label, labels, embedding, order, entities, text, contains or "
                f"pattern must be set (got {given or 'none'}): label(s) for "
                "text-classification, embedding for embedding, order for reranking, entities "
                "for token-classification, text/contains/pattern for text-generation"
            )
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as error:
                raise ValueError(
                    f"pattern: {self.pattern!r} is not a regular expression ({error}); "
                    "fix it, or use contains for a plain substring"
                ) from None
        if self.scores is not None and (self.order is None or
                                        len(self.scores) != len(self.order)):
            raise ValueError("scores: needs order, with one score per document")
        if self.order is not None and sorted(self.order) != list(range(len(self.order))):
            raise ValueError(f"order: must list each document index once, got {self.order}")
        return self


class ValidationSpec(OmitNewDefaults):
    """A known input and the output a correct model gives for it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.documents) == has(self.expected.order)",
                    "documents goes with expected.order (reranking) and only with it",
                    ".documents",
                ),
                cel(
                    "!has(self.documents) || !has(self.expected.order) "
                    "|| size(self.documents) == size(self.expected.order)",
                    "expected.order needs one index per document",
                    ".expected.order",
                ),
                cel(
                    "!has(self.maxTokens) || has(self.expected.text) "
                    "|| has(self.expected.contains) || has(self.expected.pattern)",
                    "maxTokens is only for text-generation (expected.text, contains or pattern)",
                    ".maxTokens",
                ),
            ]
        }
    )
    _new_fields = ("documents", "max_tokens")

    input: Annotated[
        str,
        Field(description="The known input (the query, for reranking).", min_length=1,
              max_length=8192),
    ]
    documents: Annotated[
        list[Annotated[str, Field(max_length=2048)]] | None,
        Field(description="Reranking: documents scored against input.", min_length=1,
              max_length=64),
    ] = None
    expected: Annotated[ExpectedOutput, Field(description="The expected output.")]
    timeout_seconds: Annotated[
        int, Field(description="How long one validation may take.", ge=1, le=3600)
    ] = 60
    max_tokens: Annotated[
        int | None,
        Field(
            description=(
                "Text-generation: tokens generated (greedy) for the golden prompt; unset: 16."
            ),
            ge=1,
            le=4096,
        ),
    ] = None

    @model_validator(mode="after")
    def _documents_with_order(self) -> ValidationSpec:
        order = self.expected.order
        if (self.documents is None) != (order is None):
            raise ValueError(
                "documents: give validation.documents with expected.order (reranking), "
                "and only then"
            )
        if self.documents is not None and order is not None and len(order) != len(
                self.documents):
            raise ValueError(
                f"expected.order: {len(order)} indices for {len(self.documents)} documents; "
                "give one index per document"
            )
        generated = (self.expected.text, self.expected.contains, self.expected.pattern)
        if self.max_tokens is not None and all(k is None for k in generated):
            raise ValueError(
                "maxTokens: only text-generation validations (expected.text, contains or "
                "pattern) generate tokens; remove it"
            )
        return self
