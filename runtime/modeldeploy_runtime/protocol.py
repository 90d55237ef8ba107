"""Open Inference Protocol (v2) request shapes and their validation, free of any I/O."""

from __future__ import annotations

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


def parse_texts(body: bytes) -> tuple[str | None, list[str]]:
    """The request id and the texts of the single BYTES input, or BadRequest saying why."""
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
    if len(request.inputs) != 1:
        raise BadRequest(f"expected exactly 1 input tensor, got {len(request.inputs)}")
    tensor = request.inputs[0]
    if tensor.datatype != "BYTES":
        raise BadRequest(f"input {tensor.name!r} has datatype {tensor.datatype!r}; use 'BYTES'")
    data = tensor.data
    # A [n, 1] shape is what some OIP clients send for a column of strings.
    if len(data) == 1 and isinstance(data[0], list):
        data = data[0]
    count = 1
    for dim in tensor.shape:
        count *= dim
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
    return request.id, list(data)
