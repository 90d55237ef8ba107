"""OpenAI's text-generation endpoints over the Generator: `POST /v1/chat/completions` and
`POST /v1/completions`, answered whole or (`stream: true`) as server-sent events ending
with `data: [DONE]`; and the OIP v2 infer answer of the text-generation task.

Request and response shapes are pydantic models of OpenAI's. A client that goes away
at any point (while its prompt is tokenised, before the first token or byte, mid-stream,
or while a whole answer is being generated) cancels its generation, so its slot frees at
the next token; more generations than the configured slots are answered 503 with
Retry-After.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from anyio import to_thread
from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from modeldeploy_runtime import decoding, openai, protocol
from modeldeploy_runtime.decoding import Busy, Sampling
from modeldeploy_runtime.protocol import BadRequest

if TYPE_CHECKING:
    from modeldeploy_runtime.generate import Generator, Run

Handler = Callable[[Request], Awaitable[Response]]
MAX_STOPS = 4  # as OpenAI
# How long an OIP infer waits for a generation slot before it is answered 503.
OIP_SLOT_WAIT_SECONDS = 10.0


class GenerationMetrics:
    """Tokens generated and generations running, in the server's registry."""

    def __init__(self, registry: CollectorRegistry, running: Callable[[], int]) -> None:
        self.tokens = Counter(
            "modeldeploy_generated_tokens", "Tokens generated (text-generation).",
            registry=registry)
        # Read from the generator when scraped: a generation counts until `generate` has
        # returned, whichever way its request ended.
        self.in_flight = Gauge(
            "modeldeploy_generations_in_flight", "Generations running now (text-generation).",
            registry=registry)
        self.in_flight.set_function(running)
        self.busy = Counter(
            "modeldeploy_generations_refused_busy",
            "Generations refused with 503 because every slot was taken.", registry=registry)


class StreamOptions(BaseModel):
    """OpenAI's stream_options."""

    include_usage: bool = False


class _Sampled(BaseModel):
    # Clients send fields of their own (user, logprobs, ...); unknown ones are ignored.
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    min_tokens: int = Field(default=0, ge=0, description="vLLM's extension: no EOS before.")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=1, description="One choice per request.")
    stream: bool = False
    stream_options: StreamOptions | None = None

    def sampling(self, max_tokens: int | None = None) -> Sampling:
        """The decoder's settings for this request."""
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > MAX_STOPS:
            raise BadRequest(f"stop: {len(stops)} sequences; send at most {MAX_STOPS}")
        if any(not s for s in stops):
            raise BadRequest("stop: an empty string never occurs; remove it")
        return Sampling(max_tokens=max_tokens or self.max_tokens, min_tokens=self.min_tokens,
                        temperature=self.temperature, top_p=self.top_p, stop=tuple(stops))


class TextPart(BaseModel):
    """A text part of a message's content."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One message of the chat."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[TextPart]

    def as_template_input(self) -> dict[str, str]:
        """The {role, content} mapping chat templates read."""
        text = self.content if isinstance(self.content, str) else "".join(
            p.text for p in self.content)
        return {"role": self.role, "content": text}


class ChatCompletionRequest(_Sampled):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(_Sampled):
    """POST /v1/completions (one prompt)."""

    prompt: str | list[str]


class Usage(BaseModel):
    """Token counts of one request."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    """The answer of a chat completion."""

    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    """A chat completion's choice."""

    index: int = 0
    message: AssistantMessage
    finish_reason: str


class ChatCompletion(BaseModel):
    """The chat.completion object."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class Delta(BaseModel):
    """A piece of the streamed answer."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    """A streamed chat choice."""

    index: int = 0
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    """The chat.completion.chunk object."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class CompletionChoice(BaseModel):
    """A text completion's choice (whole or streamed)."""

    index: int = 0
    text: str
    finish_reason: str | None = None
    logprobs: None = None


class Completion(BaseModel):
    """The text_completion object (also each streamed chunk)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


def _usage(run: Run) -> Usage:
    return Usage(prompt_tokens=run.prompt_tokens, completion_tokens=run.completion_tokens,
                 total_tokens=run.prompt_tokens + run.completion_tokens)


def _event(model: BaseModel) -> bytes:
    return f"data: {model.model_dump_json(exclude_none=True)}\n\n".encode()


def busy_response(error: Busy) -> JSONResponse:
    """503 with Retry-After: the client may come back when a slot frees."""
    return JSONResponse({"error": str(error), "reason": "Busy"}, status_code=503,
                        headers={"Retry-After": str(decoding.RETRY_AFTER_SECONDS)})


async def pieces(run: Run) -> AsyncIterator[str]:
    """The run's text as it is decoded; closing or cancelling this stops the generation.

    next() blocks on the streamer, so it runs in a worker thread that a cancelled request
    abandons (it ends at the next token, once the run is cancelled) instead of waiting for
    text that may only come when the generation is over."""
    iterator = iter(run)
    try:
        while (piece := await to_thread.run_sync(next, iterator, None,
                                                 abandon_on_cancel=True)) is not None:
            yield piece
    finally:
        run.cancel()


class HangUp:
    """Watches a request's connection while its answer is computed: a client that goes away
    cancels the generation it is waiting for (or the next one started for it)."""

    def __init__(self, request: Request) -> None:
        self.gone = False
        self._run: Run | None = None
        self._task = asyncio.ensure_future(self._watch(request.receive))

    async def _watch(self, receive: Receive) -> None:
        # The body has been read: what comes next is the disconnect.
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        if self._run is not None:
            self._run.cancel()

    def track(self, run: Run) -> Run:
        """Cancel `run` when the client goes (at once if it already has)."""
        self._run = run
        if self.gone:
            run.cancel()
        return run

    def close(self) -> None:
        """Stop watching (before the answer is sent: sending completes the request)."""
        self._task.cancel()


async def whole(request: Request, run: Run) -> str:
    """The complete text of `run`, cut short if the client goes away before it is done."""
    hang_up = HangUp(request)
    hang_up.track(run)
    try:
        return "".join([piece async for piece in pieces(run)])
    finally:
        hang_up.close()


class GenerationStream(StreamingResponse):
    """Server-sent events of one run; the run is cancelled when the response ends in any
    way, including a client gone before the first chunk was asked for."""

    def __init__(self, run: Run, content: AsyncIterator[bytes]) -> None:
        super().__init__(content, media_type="text/event-stream")
        self.run = run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.run.cancel()


def routes(
    name: str, task: str, generator: Callable[[], Generator | None],
    not_ready: Callable[[], Response], timed: Callable[[str, Handler], Handler],
    metrics: GenerationMetrics,
) -> list[Route]:
    """The /v1 text-generation routes (`generator()` is None until Ready)."""

    def refuse(body: _Sampled) -> Response | None:
        if body.model is not None and body.model != name:
            return JSONResponse({"error": f"model {body.model!r} is not served here; this "
                                          f"server serves {name!r}"}, status_code=404)
        if task != "text-generation":
            return JSONResponse({"error": f"this server's task is {task!r}; this endpoint "
                                          "serves the 'text-generation' task"}, status_code=404)
        return None

    async def begin(current: Generator, ids_of: Callable[[], list[int]],
                    sampling: Sampling) -> Run:
        ids = await run_in_threadpool(ids_of)
        try:
            return current.start(ids, sampling, metrics.tokens.inc)
        except Busy:
            metrics.busy.inc()
            raise

    async def chat_completions(request: Request) -> Response:
        body = await openai.parse_body(request, ChatCompletionRequest)
        if (refused := refuse(body)) is not None:
            return refused
        current = generator()
        if current is None:
            return not_ready()
        messages = [m.as_template_input() for m in body.messages]
        sampling = body.sampling(body.max_completion_tokens)
        try:
            run = await begin(current, lambda: current.chat_ids(messages), sampling)
        except Busy as error:
            return busy_response(error)
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def chunk(delta: Delta, finish: str | None = None) -> bytes:
            return _event(ChatCompletionChunk(id=ident, created=created, model=name, choices=[
                ChunkChoice(delta=delta, finish_reason=finish)]))

        if not body.stream:
            text = await whole(request, run)
            return JSONResponse(ChatCompletion(
                id=ident, created=created, model=name, usage=_usage(run),
                choices=[ChatChoice(message=AssistantMessage(content=text),
                                    finish_reason=run.finish_reason)],
            ).model_dump(mode="json"))

        async def events() -> AsyncIterator[bytes]:
            yield chunk(Delta(role="assistant", content=""))
            async for piece in pieces(run):
                yield chunk(Delta(content=piece))
            yield chunk(Delta(), run.finish_reason)
            if body.stream_options is not None and body.stream_options.include_usage:
                yield _event(ChatCompletionChunk(id=ident, created=created, model=name,
                                                 choices=[], usage=_usage(run)))
            yield b"data: [DONE]\n\n"

        return GenerationStream(run, events())

    async def completions(request: Request) -> Response:
        body = await openai.parse_body(request, CompletionRequest)
        if (refused := refuse(body)) is not None:
            return refused
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1:
            raise BadRequest(f"prompt: {len(prompts)} prompts; send one per request")
        current = generator()
        if current is None:
            return not_ready()
        try:
            run = await begin(current, lambda: current.prompt_ids(prompts[0]), body.sampling())
        except Busy as error:
            return busy_response(error)
        ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

        def completion(text: str, finish: str | None, usage: Usage | None) -> Completion:
            return Completion(id=ident, created=created, model=name, usage=usage,
                              choices=[CompletionChoice(text=text, finish_reason=finish)])

        if not body.stream:
            text = await whole(request, run)
            return JSONResponse(completion(text, run.finish_reason, _usage(run))
                                .model_dump(mode="json"))

        async def events() -> AsyncIterator[bytes]:
            async for piece in pieces(run):
                yield _event(completion(piece, None, None))
            yield _event(completion("", run.finish_reason, None))
            if body.stream_options is not None and body.stream_options.include_usage:
                yield _event(Completion(id=ident, created=created, model=name, choices=[],
                                        usage=_usage(run)))
            yield b"data: [DONE]\n\n"

        return GenerationStream(run, events())

    return [
        Route("/v1/chat/completions", timed("/v1/chat/completions", chat_completions),
              methods=["POST"]),
        Route("/v1/completions", timed("/v1/completions", completions), methods=["POST"]),
    ]


def oip_parameters(body: bytes) -> Sampling:
    """Sampling settings from an OIP infer request's `parameters` (max_tokens, temperature,
    top_p, stop, min_tokens), checked with the same model as /v1/completions."""
    request = protocol.InferRequest.model_validate_json(body)
    params: dict[str, Any] = dict(request.parameters or {})
    params["prompt"] = ""
    try:
        return CompletionRequest.model_validate(params).sampling()
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(f"invalid parameters.{where}: {first['msg']}") from None


async def oip_infer(request: Request, current: Generator, texts: list[str],
                    sampling: Sampling, metrics: GenerationMetrics) -> list[dict[str, object]]:
    """The OIP outputs for texts: one 'text' BYTES output with each greedy/sampled completion
    (the shape the operator's validation reads).

    It waits a while for a slot instead of answering 503 at once: the operator's own
    validation comes this way, and a busy pod is no failed version. A client that goes away
    cancels the generation under way and starts no more."""
    answers: list[str] = []
    hang_up = HangUp(request)
    try:
        for text in texts:
            if hang_up.gone:
                break
            ids = await run_in_threadpool(current.prompt_ids, text)
            run = hang_up.track(await run_in_threadpool(
                current.start, ids, sampling, metrics.tokens.inc, OIP_SLOT_WAIT_SECONDS))
            answers.append("".join([piece async for piece in pieces(run)]))
    finally:
        hang_up.close()
    return [{"name": "text", "datatype": "BYTES", "shape": [len(answers)], "data": answers}]

