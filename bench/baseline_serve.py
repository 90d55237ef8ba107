"""The plain baseline server: sentence-transformers behind Starlette, no batching.

What one writes without a serving framework: each request runs `SentenceTransformer.encode`
(task embedding) or `CrossEncoder.predict` (task reranking) in the thread pool as it comes.
Speaks POST /v1/embeddings or POST /v1/rerank like the other contenders.

Usage: python bench/baseline_serve.py MODEL_DIR PORT [embedding|reranking]   (127.0.0.1)
"""

from __future__ import annotations

import sys

import uvicorn
from sentence_transformers import CrossEncoder, SentenceTransformer
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

TASK = sys.argv[3] if len(sys.argv) > 3 else "embedding"


async def ready(request: Request) -> Response:
    return JSONResponse({"status": "ready"})


if TASK == "embedding":
    model = SentenceTransformer(sys.argv[1], device="cpu")

    async def embeddings(request: Request) -> Response:
        body = await request.json()
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        vectors = await run_in_threadpool(model.encode, texts)
        return JSONResponse({"object": "list", "data": [
            {"object": "embedding", "index": i, "embedding": v.tolist()}
            for i, v in enumerate(vectors)]})

    route = Route("/v1/embeddings", embeddings, methods=["POST"])
else:
    cross = CrossEncoder(sys.argv[1], device="cpu")

    async def rerank(request: Request) -> Response:
        body = await request.json()
        pairs = [(body["query"], d) for d in body["documents"]]
        scores = (await run_in_threadpool(cross.predict, pairs)).tolist()
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        return JSONResponse({"results": [{"index": i, "relevance_score": scores[i]}
                                         for i in order]})

    route = Route("/v1/rerank", rerank, methods=["POST"])

app = Starlette(routes=[route, Route("/readyz", ready)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            access_log=False)
