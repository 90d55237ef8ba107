"""The HTTP surface: liveness, readiness, /status, OIP v2 and /metrics (Starlette)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modeldeploy_runtime import chat, openai, protocol
from modeldeploy_runtime.batching import Batcher, DeadlineExceeded, QueueFull
from modeldeploy_runtime.decoding import Busy
from modeldeploy_runtime.metrics import CONTENT_TYPE, Metrics
from modeldeploy_runtime.state import Phase, RuntimeState

if TYPE_CHECKING:
    from modeldeploy_runtime.generate import Generator
    from modeldeploy_runtime.tasks import Pipeline

Handler = Callable[[Request], Awaitable[Response]]

log = logging.getLogger("modeldeploy.runtime")

# OIP outputs per task, for the model metadata endpoint.
_OUTPUTS: dict[str, list[dict[str, object]]] = {
    "embedding": [{"name": "embedding", "datatype": "FP32", "shape": [-1, -1]}],
    "reranking": [{"name": "score", "datatype": "FP32", "shape": [-1]}],
    "text-classification": [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                            {"name": "score", "datatype": "FP32", "shape": [-1]}],
    "token-classification": [{"name": "entities", "datatype": "BYTES", "shape": [-1]}],
    "text-generation": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
}
_INPUTS: dict[str, list[dict[str, object]]] = {
    "reranking": [{"name": "query", "datatype": "BYTES", "shape": [-1]},
                  {"name": "documents", "datatype": "BYTES", "shape": [-1]}],
}


def _out_of_memory(error: BaseException) -> bool:
    # torch.OutOfMemoryError (CUDA) or MemoryError / "not enough memory" (CPU allocator).
    text = str(error).lower()
    return (isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"
            or "out of memory" in text or "not enough memory" in text)


def _release_cached_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def error_response(error: Exception) -> JSONResponse:
    """The answer for an exception a handler raised: never an uncounted 500."""
    if isinstance(error, protocol.BadRequest):
        return JSONResponse({"error": str(error)}, status_code=400)
    if isinstance(error, QueueFull):
        return JSONResponse({"error": str(error), "reason": "QueueFull"}, status_code=503,
                            headers={"Retry-After": str(error.retry_after)})
    if isinstance(error, DeadlineExceeded):
        return JSONResponse({"error": str(error), "reason": "DeadlineExceeded"},
                            status_code=503, headers={"Retry-After": "1"})
    if isinstance(error, Busy):
        return chat.busy_response(error)
    if _out_of_memory(error):
        _release_cached_memory()
        log.warning("out of memory during a request: %s", error)
        return JSONResponse({
            "error": "the model ran out of memory on this request: send fewer or shorter "
                     "inputs per request, or give the pod more memory; the server keeps serving",
            "reason": "OutOfMemory"}, status_code=503)
    log.exception("request failed")
    return JSONResponse({"error": f"internal error: {type(error).__name__}: {error}"},
                        status_code=500)


class ModelSlot:
    """Holds the Pipeline (or, for text-generation, the Generator) once loaded; the loader
    fills it before moving to Ready."""

    def __init__(self) -> None:
        self.pipeline: Pipeline | None = None
        self.generator: Generator | None = None


def build_app(state: RuntimeState, slot: ModelSlot, metrics: Metrics,
              batcher: Batcher | None = None) -> Starlette:
    """The ASGI application for one model; inference goes through `batcher` (the model's
    queue: default settings when None)."""
    batcher = batcher or Batcher(metrics=metrics)
    status0 = state.snapshot()
    name, version, task = status0.model.name, status0.model.version, status0.task

    def timed(route: str, handler: Handler) -> Handler:
        async def wrapper(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except Exception as error:
                response = error_response(error)
            metrics.latency.labels(route).observe(time.perf_counter() - started)
            metrics.requests.labels(route, str(response.status_code)).inc()
            return response

        return wrapper

    def ready_pipeline() -> Pipeline | None:
        return slot.pipeline if state.phase is Phase.READY else None

    def ready_generator() -> Generator | None:
        return slot.generator if state.phase is Phase.READY else None

    generation_metrics = chat.GenerationMetrics(
        metrics.registry, lambda: slot.generator.running if slot.generator is not None else 0)

    def not_ready() -> Response:
        return JSONResponse(
            {"error": f"model {name!r} is not ready (phase {state.phase.value}); retry later"},
            status_code=503,
        )

    def readiness() -> JSONResponse:
        snap = state.snapshot()
        body = {"phase": snap.phase.value, "error": snap.error}
        return JSONResponse(body, status_code=200 if snap.phase is Phase.READY else 503)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "alive", "phase": state.phase.value})

    async def readyz(request: Request) -> Response:
        return readiness()

    async def status(request: Request) -> Response:
        return JSONResponse(state.snapshot().model_dump(mode="json", by_alias=True))

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def server_meta(request: Request) -> Response:
        return JSONResponse({"name": "modeldeploy-runtime", "version": "0.1.0", "extensions": []})

    def unknown(model: str) -> JSONResponse:
        return JSONResponse(
            {"error": f"model {model!r} is not served here; this server serves {name!r}"},
            status_code=404,
        )

    async def model_meta(request: Request) -> Response:
        model = request.path_params["name"]
        if model != name:
            return unknown(model)
        return JSONResponse({
            "name": name, "versions": [version], "platform": "pytorch",
            "inputs": _INPUTS.get(task, [{"name": "text", "datatype": "BYTES", "shape": [-1]}]),
            "outputs": _OUTPUTS.get(task, []),
        })

    async def model_ready(request: Request) -> Response:
        model = request.path_params["name"]
        return unknown(model) if model != name else readiness()

    async def infer(request: Request) -> Response:
        model = request.path_params["name"]
        if model != name:
            return unknown(model)
        generator = ready_generator()
        pipeline = ready_pipeline()
        if pipeline is None and generator is None:
            return not_ready()
        declared = request.headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > protocol.MAX_BODY_BYTES:
            # Refuse before reading: a huge body must not be buffered just to be rejected.
            return JSONResponse(
                {"error": f"body has {declared} bytes; the limit is {protocol.MAX_BODY_BYTES}"},
                status_code=413,
            )
        raw = await request.body()
        inputs = protocol.parse(raw, pairs=task == "reranking")
        answer: list[dict[str, object]]
        if generator is not None:
            answer = await chat.oip_infer(request, generator, inputs.texts,
                                          chat.oip_parameters(raw), generation_metrics)
        else:
            assert pipeline is not None
            answer = [asdict(o) for o in await pipeline.infer(inputs, batcher)]
        body: dict[str, object] = {
            "model_name": name, "model_version": version, "outputs": answer,
        }
        if inputs.id is not None:
            body["id"] = inputs.id
        return JSONResponse(body)

    routes = [
        Route("/healthz", timed("/healthz", healthz)),
        Route("/readyz", timed("/readyz", readyz)),
        Route("/status", timed("/status", status)),
        Route("/metrics", metrics_endpoint),
        Route("/v2", timed("/v2", server_meta)),
        Route("/v2/health/live", timed("/v2/health/live", healthz)),
        Route("/v2/health/ready", timed("/v2/health/ready", readyz)),
        Route("/v2/models/{name}", timed("/v2/models/{name}", model_meta)),
        Route("/v2/models/{name}/ready", timed("/v2/models/{name}/ready", model_ready)),
        Route("/v2/models/{name}/infer", timed("/v2/models/{name}/infer", infer),
              methods=["POST"]),
        *openai.routes(name, task, ready_pipeline, not_ready, timed, batcher),
        *chat.routes(name, task, ready_generator, not_ready, timed, generation_metrics),
    ]

    async def unrouted(request: Request, error: Exception) -> Response:
        # Unknown paths and methods are answers too, counted under one route label.
        code = getattr(error, "status_code", 404)
        metrics.requests.labels("<unmatched>", str(code)).inc()
        return JSONResponse(
            {"error": f"{request.method} {request.url.path}: {getattr(error, 'detail', error)}"},
            status_code=code)

    return Starlette(routes=routes, exception_handlers={HTTPException: unrouted})
