"""`serve`: start the HTTP server at once, load/warm/validate in a thread, then go Ready.

The server answers /healthz (and /readyz 503) while the model loads, so Kubernetes sees a
live pod with a phase, not a silent one. Any load or validation failure moves to Failed,
writes the termination message and stops the server with exit code 1.
"""

from __future__ import annotations

import concurrent.futures
import logging
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from modeldeploy_contract import judge
from modeldeploy_contract.config import RuntimeConfig, Validation
from modeldeploy_contract.reasons import Reason
from modeldeploy_contract.status import SKIPPED, ValidationResult

from modeldeploy_runtime import cache, deadlines, knobs, loader, termination
from modeldeploy_runtime.batching import Batcher
from modeldeploy_runtime.decoding import Sampling
from modeldeploy_runtime.errors import LoadError, RuntimeFailure, ValidationFailed
from modeldeploy_runtime.metrics import Metrics
from modeldeploy_runtime.preload import Imports, use_forward_threads
from modeldeploy_runtime.server import ModelSlot, build_app
from modeldeploy_runtime.state import Phase, RuntimeState

if TYPE_CHECKING:
    from modeldeploy_runtime.generate import Generator
    from modeldeploy_runtime.tasks import Pipeline

log = logging.getLogger("modeldeploy.runtime")


def _prepare(
    config: RuntimeConfig, entry: Path, state: RuntimeState, slot: ModelSlot,
    metrics: Metrics, imports: Imports, clock: deadlines.StageClock, batcher: Batcher,
) -> None:
    def record(name: str, seconds: float) -> None:
        state.record(name, seconds)
        metrics.phase_seconds.labels(name).set(state.snapshot().phases[name] or 0.0)

    try:
        record("import", imports.wait())
    except ImportError as error:
        raise LoadError(f"{error}; the runtime image is missing a dependency") from None
    delay = knobs.load_delay()
    if delay:
        log.warning("test knob %s: sleeping %.1f s before loading", knobs.LOAD_DELAY_ENV, delay)
        time.sleep(delay)
    if not cache.is_complete(entry):
        raise LoadError(
            f"model cache entry {entry} is missing or incomplete: run "
            "`modeldeploy-runtime fetch` first (the init container) with the same cache root"
        )
    state.set_revision(cache.read_manifest(entry).revision)
    pipeline: Pipeline | None = None
    generator: Generator | None = None
    if config.task == "text-generation":
        from modeldeploy_runtime import generate

        generator = generate.load(config, entry, record)
    else:
        pipeline = loader.load(config, entry, record)
        threads = use_forward_threads(pipeline.device.type)
        log.info("%d forward thread(s) of %d intra-op thread(s) each", threads.forward,
                 threads.intra_op)
        batcher.fit(pipeline.device.type, threads.forward)
    model = generator if generator is not None else pipeline
    assert model is not None

    clock.enter("warmup")
    state.move(Phase.WARMING_UP)
    started = time.monotonic()
    for _ in range(config.warmup.iterations):
        if config.warmup.inputs:
            model.warm(config.warmup.inputs)
    record("warmup", time.monotonic() - started)

    clock.enter("validation")
    state.move(Phase.VALIDATING)
    started = time.monotonic()
    result = _validate(config, model)
    if config.validation is not None:  # a skipped validation stays null in /status
        record("validation", time.monotonic() - started)
    state.set_validation(result)
    if result.passed is False:
        raise ValidationFailed(result.message)
    if result.passed is None:
        log.warning("validation is not configured; the model goes Ready unchecked")
    clock.finish()
    if pipeline is not None and (delay := knobs.forward_delay()):
        log.warning("test knob %s: each forward pass sleeps %.1f s", knobs.FORWARD_DELAY_ENV,
                    delay)
        pipeline = knobs.slowed(pipeline, delay)
    slot.pipeline, slot.generator = pipeline, generator
    state.move(Phase.READY)
    snap = state.snapshot()
    metrics.ready.set(1)
    metrics.time_to_ready.set(snap.time_to_ready_seconds or 0.0)
    log.info("ready in %.2f s; phases %s; %s", snap.time_to_ready_seconds or 0.0,
             snap.phases, result.message)
    _maybe_drift(slot)


def _maybe_drift(slot: ModelSlot) -> None:
    after = knobs.wrong_after_ready()
    if after is None or slot.pipeline is None:
        return
    good = slot.pipeline

    def drift() -> None:
        log.warning("test knob %s: answers are wrong from now on", knobs.WRONG_AFTER_READY_ENV)
        slot.pipeline = knobs.drifted(good)

    log.warning("test knob %s: answers turn wrong in %.1f s", knobs.WRONG_AFTER_READY_ENV, after)
    timer = threading.Timer(after, drift)
    timer.daemon = True
    timer.start()


def _validate(config: RuntimeConfig, pipeline: Pipeline | Generator) -> ValidationResult:
    spec = config.validation
    if spec is None:
        return SKIPPED
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="validation")
    try:
        return pool.submit(_judge, spec, pipeline).result(timeout=spec.timeout_seconds)
    except concurrent.futures.TimeoutError:
        raise ValidationFailed(
            f"validation did not finish within timeoutSeconds={spec.timeout_seconds}; "
            "raise validation.timeoutSeconds or give the pod more CPU"
        ) from None
    finally:
        pool.shutdown(wait=False)


def _judge(spec: Validation, pipeline: Pipeline | Generator) -> ValidationResult:
    expected, text = spec.expected, spec.input
    kind = expected.kind
    from modeldeploy_runtime.generate import Generator

    if isinstance(pipeline, Generator):  # text-generation: the golden prompt, greedy
        tokens = spec.max_tokens or judge.VALIDATION_TOKENS
        return judge.check_text(expected, pipeline.complete(text, Sampling(
            max_tokens=tokens, temperature=0.0)))
    if kind == "label":
        labels, scores = pipeline.classify([text])
        return judge.check_label(expected, labels[0], scores[0])
    if kind == "labels":
        return judge.check_labels(expected, pipeline.ranked([text], top_k=0)[0])
    if kind == "order":
        documents = list(spec.documents or [])
        return judge.check_order(expected, pipeline.rerank([text] * len(documents), documents))
    if kind == "entities":
        return judge.check_entities(expected, pipeline.entities([text])[0])
    return judge.check_embedding(expected, pipeline.embed([text])[0].tolist())


def serve(
    config: RuntimeConfig, cache_root: Path, host: str, port: int, termination_log: str,
    started: float, imports: Imports,
) -> int:
    """Serve until SIGTERM (exit 0) or a load/validation failure (exit 1)."""
    import uvicorn

    entry = cache.entry_dir(cache_root, config.model.name, config.model.version)
    state = RuntimeState(config.model.name, config.model.version, config.task, started)
    slot, metrics = ModelSlot(), Metrics()
    batcher = Batcher(config.batching, metrics)
    app = build_app(state, slot, metrics, batcher)
    server = uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
        timeout_graceful_shutdown=30,
    ))
    failed = threading.Event()

    clock = deadlines.StageClock(
        config.stage_deadline_seconds, deadlines.exit_on_overrun(termination_log, state.fail))
    clock.enter("load")

    def prepare() -> None:
        try:
            _prepare(config, entry, state, slot, metrics, imports, clock, batcher)
        except Exception as error:
            clock.finish()
            if isinstance(error, RuntimeFailure):
                reason = termination.message(error.reason, str(error))
            else:
                reason = termination.message(
                    LoadError.reason, f"loading failed: {type(error).__name__}: {error}")
            state.fail(reason)
            log.error("model %s/%s failed: %s", config.model.name, config.model.version, reason)
            termination.write_reason(termination_log, reason)
            failed.set()
            server.should_exit = True

    stopped_by: list[int] = []
    # uvicorn re-raises the captured signal to the previous handler after its graceful
    # shutdown; with the default handler that kills us by SIGTERM instead of exiting 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stopped_by.append(signum))
    threading.Thread(target=prepare, name="load", daemon=True).start()
    log.info("serving %s/%s on http://%s:%d (phase Loading)", config.model.name,
             config.model.version, host, port)
    server.run()
    batcher.close()
    if failed.is_set():
        return 1
    if not server.started:
        reason = termination.message(
            Reason.LISTEN_FAILED, f"could not listen on {host}:{port}; is the port in use?")
        log.error(reason)
        termination.write_reason(termination_log, reason)
        return 1
    log.info("stopped after SIGTERM; in-flight requests finished")
    return 0
