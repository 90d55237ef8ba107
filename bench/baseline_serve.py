"""The plain baseline server: sentence-transformers' encode behind Starlette, no batching.

What one writes without a serving framework: each request runs `model.encode` in the
thread pool as it comes. Speaks POST /v1/embeddings like the other two contenders.

Usage: python bench/baseline_serve.py MODEL_DIR PORT   (serves on 127.0.0.1)
"""

from __future__ import annotations

import sys

import uvicorn
from sentence_transformers import SentenceTransformer
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

model = SentenceTransformer(sys.argv[1], device="cpu")


async def embeddings(request: Request) -> Response:
    body = await request.json()
    texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
    vectors = await run_in_threadpool(model.encode, texts)
    return JSONResponse({"object": "list", "data": [
        {"object": "embedding", "index": i, "embedding": v.tolist()}
        for i, v in enumerate(vectors)]})


async def ready(request: Request) -> Response:
    return JSONResponse({"status": "ready"})


app = Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"]),
                        Route("/readyz", ready)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            access_log=False)
