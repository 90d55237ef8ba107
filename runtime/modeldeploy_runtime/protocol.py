"""Open Inference Protocol (v2) request shapes and their validation, free of any I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

MAX_BATCH = 256
MAX_BODY_BYTES = 8 << 20


class BadRequest(ValueError):
    """The request body is malformed; the message says what to fix (sent as a 400)."""


class InferInput(BaseModel):
    """One input tensor."""

    model_config = ConfigDict(extra="forbid")

    name: str
    datatype: str
    shape: list[int]
    data: list[Any]
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """The infer body; `outputs` and `parameters` are accepted and ignored."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    inputs: list[InferInput]
    outputs: list[dict[str, Any]] | None = None
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True)
class Options:
    """Request parameters the tasks read (OIP `parameters`, or the /v1 body's fields)."""

    truncate: bool = True
    prompt_name: str | None = None
    top_k: int | None = None  # None: the best label only; 0: every label

    @classmethod
    def parse(cls, parameters: dict[str, Any] | None) -> Options:
        """The known keys, type-checked; other keys are ignored as OIP allows."""
        params = parameters or {}
        truncate = params.get("truncate", True)
        if not isinstance(truncate, bool):
            raise BadRequest(f"parameters.truncate is {truncate!r}; use true or false")
        prompt = params.get("prompt_name")
        if prompt is not None and not isinstance(prompt, str):
            raise BadRequest(f"parameters.prompt_name is {prompt!r}; use a prompt's name")
        top_k = params.get("top_k")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                                  or top_k < 0):
            raise BadRequest(f"parameters.top_k is {top_k!r}; use 0 (every label) or more")
        return cls(truncate, prompt, top_k)


@dataclass(frozen=True)
class Inputs:
    """A parsed infer request: texts, or (query, document) pairs for reranking."""

    id: str | None
    texts: list[str]
    queries: list[str] | None  # one per text when the request is pairs
    options: Options


def _strings(tensor: InferInput) -> list[str]:
    data = _flatten(tensor.data)
    count = 1
    for dim in tensor.shape:
        count *= dim
    if tensor.datatype != "BYTES":
        raise BadRequest(f"input {tensor.name!r} has datatype {tensor.datatype!r}; use 'BYTES'")
    if not tensor.shape or count != len(data):
        raise BadRequest(
            f"input {tensor.name!r} has shape {tensor.shape} but {len(data)} data items; "
            "make shape [n] with n = len(data)"
        )
    if not data:
        raise BadRequest(f"input {tensor.name!r} has no data; send at least one text")
    if len(data) > MAX_BATCH:
        raise BadRequest(f"input {tensor.name!r} has {len(data)} texts; the limit is {MAX_BATCH}")
    bad = next((i for i, item in enumerate(data) if not isinstance(item, str)), None)
    if bad is not None:
        raise BadRequest(
            f"input {tensor.name!r} data[{bad}] is {type(data[bad]).__name__}; every item "
            "must be a string"
        )
    return list(data)


def _flatten(data: list[Any]) -> list[Any]:
    # OIP allows nested row-major data ([[a], [b]] for shape [2, 1]) as well as flat.
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item) if isinstance(item, list) else [item])
    return out


def parse(body: bytes, pairs: bool) -> Inputs:
    """An infer body: one BYTES input of texts; with `pairs` (reranking) either two inputs
    (query [1] or [n], documents [n]) or one input of shape [n, 2]."""
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"body has {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        request = InferRequest.model_validate_json(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest(
            f"invalid infer request at {where}: {first['msg']}; expected "
            '{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [n], "data": [...]}]}'
        ) from None
    options = Options.parse(request.parameters)
    tensors = request.inputs
    if pairs:
        if len(tensors) == 2:
            named = {t.name: t for t in tensors}
            query_t, docs_t = (named["query"], named["documents"]) if set(named) == {
                "query", "documents"} else (tensors[0], tensors[1])
            queries, docs = _strings(query_t), _strings(docs_t)
            if len(queries) == 1:
                queries = queries * len(docs)
            if len(queries) != len(docs):
                raise BadRequest(
                    f"input {query_t.name!r} has {len(queries)} queries for {len(docs)} "
                    "documents; send one query, or one per document"
                )
            return Inputs(request.id, docs, queries, options)
        if len(tensors) == 1 and len(tensors[0].shape) == 2 and tensors[0].shape[1] == 2:
            flat = _strings(tensors[0])
            return Inputs(request.id, flat[1::2], flat[0::2], options)
        raise BadRequest(
            "reranking takes two BYTES inputs, 'query' (shape [1]) and 'documents' (shape [n]), "
            "or one input of shape [n, 2] holding [query, document] pairs"
        )
    if len(tensors) != 1:
        raise BadRequest(f"expected exactly 1 input tensor, got {len(tensors)}")
    return Inputs(request.id, _strings(tensors[0]), None, options)
