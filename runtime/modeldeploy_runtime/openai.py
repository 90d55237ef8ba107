"""The HTTP APIs common clients already speak, next to OIP v2.

`POST /v1/embeddings` and `GET /v1/models` in the OpenAI shape (what LangChain, LlamaIndex
and most vector databases call), and `POST /v1/rerank` in the shape of the common rerank
APIs: `{query, documents, top_n}` -> `{results: [{index, relevance_score}]}`.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modeldeploy_runtime.protocol import MAX_BATCH, MAX_BODY_BYTES, BadRequest, Options

if TYPE_CHECKING:
    from modeldeploy_runtime.batching import Batcher
    from modeldeploy_runtime.tasks import Pipeline

Handler = Callable[[Request], Awaitable[Response]]
_T = TypeVar("_T", bound=BaseModel)


class _Body(BaseModel):
    # Clients send fields of their own (user, encoding options); unknown ones are ignored.
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    truncate: bool = Field(default=True, description="False: a too-long input is a 400.")


class EmbeddingsRequest(_Body):
    """OpenAI's embeddings request (text input only)."""

    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    prompt_name: str | None = None


class RerankRequest(_Body):
    """A rerank request: one query, documents (strings or {"text": ...})."""

    query: str
    documents: list[str | dict[str, Any]]
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False
    sort: bool = Field(default=True, description="False: results in input order.")


async def _parse(request: Request, cls: type[_T]) -> _T:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"body has {len(body)} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        return cls.model_validate_json(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest(f"invalid request at {where}: {first['msg']}") from None


# The text-generation endpoints (chat.py) parse their bodies the same way.
parse_body = _parse


def _b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def routes(
    name: str, task: str, pipeline: Callable[[], Pipeline | None],
    not_ready: Callable[[], Response], timed: Callable[[str, Handler], Handler],
    batcher: Batcher,
) -> list[Route]:
    """The /v1 routes over the slot's pipeline (`pipeline()` is None until Ready), computed
    through the model's `batcher`."""

    def refuse(body: _Body, wanted: str) -> Response | None:
        if body.model is not None and body.model != name:
            return JSONResponse({"error": f"model {body.model!r} is not served here; this "
                                          f"server serves {name!r}"}, status_code=404)
        if task != wanted:
            return JSONResponse({"error": f"this server's task is {task!r}; this endpoint "
                                          f"serves the {wanted!r} task"}, status_code=404)
        return None

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "modeldeploy",
             "task": task}]})

    async def embeddings(request: Request) -> Response:
        body = await _parse(request, EmbeddingsRequest)
        if (refused := refuse(body, "embedding")) is not None:
            return refused
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or len(texts) > MAX_BATCH:
            raise BadRequest(f"input has {len(texts)} texts; send 1 to {MAX_BATCH}")
        current = pipeline()
        if current is None:
            return not_ready()
        options = Options(truncate=body.truncate, prompt_name=body.prompt_name)
        work = await run_in_threadpool(current.embedding_work, texts, options)
        vectors = await batcher.submit(work)
        if body.dimensions is not None and body.dimensions != vectors.shape[1]:
            raise BadRequest(f"dimensions is {body.dimensions}; this model gives "
                             f"{vectors.shape[1]}: leave it unset or send {vectors.shape[1]}")
        tokens = work.tokens
        rows: list[list[float]] = vectors.tolist()
        data = [{"object": "embedding", "index": i,
                 "embedding": _b64(row) if body.encoding_format == "base64" else row}
                for i, row in enumerate(rows)]
        return JSONResponse({"object": "list", "data": data, "model": name,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def rerank(request: Request) -> Response:
        body = await _parse(request, RerankRequest)
        if (refused := refuse(body, "reranking")) is not None:
            return refused
        documents = [d if isinstance(d, str) else str(d.get("text", "")) for d in body.documents]
        if not documents or len(documents) > MAX_BATCH:
            raise BadRequest(f"documents has {len(documents)} items; send 1 to {MAX_BATCH}")
        current = pipeline()
        if current is None:
            return not_ready()
        work = await run_in_threadpool(current.logits_work, [body.query] * len(documents),
                                       documents, Options(truncate=body.truncate))
        scores = current.scores(await batcher.submit(work))
        order = list(range(len(scores)))
        if body.sort:
            order.sort(key=lambda i: (-scores[i], i))
        results: list[dict[str, Any]] = []
        for i in order[: body.top_n]:
            item: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
            if body.return_documents:
                item["document"] = {"text": documents[i]}
            results.append(item)
        return JSONResponse({"model": name, "results": results})

    return [
        Route("/v1/models", timed("/v1/models", models)),
        Route("/v1/embeddings", timed("/v1/embeddings", embeddings), methods=["POST"]),
        Route("/v1/rerank", timed("/v1/rerank", rerank), methods=["POST"]),
    ]
