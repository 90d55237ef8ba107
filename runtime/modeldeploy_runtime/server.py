"""The HTTP surface: liveness, readiness, /status, OIP v2 and /metrics (Starlette)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modeldeploy_runtime import protocol
from modeldeploy_runtime.metrics import CONTENT_TYPE, Metrics
from modeldeploy_runtime.state import Phase, RuntimeState

if TYPE_CHECKING:
    from modeldeploy_runtime.tasks import Pipeline

Handler = Callable[[Request], Awaitable[Response]]


class ModelSlot:
    """Holds the Pipeline once loaded; the loader fills it before moving to Ready."""

    def __init__(self) -> None:
        self.pipeline: Pipeline | None = None


def build_app(state: RuntimeState, slot: ModelSlot, metrics: Metrics) -> Starlette:
    """The ASGI application for one model."""
    status0 = state.snapshot()
    name, version, task = status0.model.name, status0.model.version, status0.task

    def timed(route: str, handler: Handler) -> Handler:
        async def wrapper(request: Request) -> Response:
            started = time.perf_counter()
            response = await handler(request)
            metrics.latency.labels(route).observe(time.perf_counter() - started)
            metrics.requests.labels(route, str(response.status_code)).inc()
            return response

        return wrapper

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
        outputs = (
            [{"name": "embedding", "datatype": "FP32", "shape": [-1, -1]}]
            if task == "embedding"
            else [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                  {"name": "score", "datatype": "FP32", "shape": [-1]}]
        )
        return JSONResponse({
            "name": name, "versions": [version], "platform": "pytorch",
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
            "outputs": outputs,
        })

    async def model_ready(request: Request) -> Response:
        model = request.path_params["name"]
        return unknown(model) if model != name else readiness()

    async def infer(request: Request) -> Response:
        model = request.path_params["name"]
        if model != name:
            return unknown(model)
        pipeline = slot.pipeline
        if state.phase is not Phase.READY or pipeline is None:
            return JSONResponse(
                {"error": f"model {name!r} is not ready (phase {state.phase.value}); retry later"},
                status_code=503,
            )
        declared = request.headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > protocol.MAX_BODY_BYTES:
            # Refuse before reading: a huge body must not be buffered just to be rejected.
            return JSONResponse(
                {"error": f"body has {declared} bytes; the limit is {protocol.MAX_BODY_BYTES}"},
                status_code=413,
            )
        try:
            request_id, texts = protocol.parse_texts(await request.body())
        except protocol.BadRequest as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        outputs = await run_in_threadpool(pipeline.run, texts)
        body: dict[str, object] = {
            "model_name": name, "model_version": version,
            "outputs": [asdict(o) for o in outputs],
        }
        if request_id is not None:
            body["id"] = request_id
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
    ]
    return Starlette(routes=routes)
