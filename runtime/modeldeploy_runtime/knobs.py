"""Test knobs: environment variables that make a good model misbehave on purpose.

The fault scenarios need versions that are slow, or that turn wrong after passing their
own checks, built from real weights. Never set these in production; the runtime logs a
warning whenever one is active.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import TYPE_CHECKING

from modeldeploy_runtime.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor

    from modeldeploy_runtime.tasks import Pipeline

LOAD_DELAY_ENV = "MODELDEPLOY_DEBUG_LOAD_DELAY_SECONDS"
WRONG_AFTER_READY_ENV = "MODELDEPLOY_DEBUG_WRONG_AFTER_READY_SECONDS"
FORWARD_DELAY_ENV = "MODELDEPLOY_DEBUG_FORWARD_DELAY_SECONDS"


def _seconds(name: str) -> float | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds; unset it") from None
    return max(0.0, value)


def load_delay() -> float:
    """Seconds to sleep before loading (MODELDEPLOY_DEBUG_LOAD_DELAY_SECONDS; 0 when unset)."""
    return _seconds(LOAD_DELAY_ENV) or 0.0


def wrong_after_ready() -> float | None:
    """Seconds after Ready when answers turn wrong (MODELDEPLOY_DEBUG_WRONG_AFTER_READY_SECONDS)."""
    return _seconds(WRONG_AFTER_READY_ENV)


def drifted(pipeline: Pipeline) -> Pipeline:
    """The same model with its outputs negated: embeddings point the other way (cosine -1),
    a classifier picks its least likely label, a reranker reverses its order."""
    forward = pipeline.forward

    def negated(features: dict[str, Tensor]) -> Tensor:
        return -forward(features)

    return dataclasses.replace(pipeline, forward=negated)


def forward_delay() -> float:
    """Seconds each forward pass sleeps once Ready (MODELDEPLOY_DEBUG_FORWARD_DELAY_SECONDS;
    0 when unset): a busy model, so the queue's bound and deadlines can be seen at work."""
    return _seconds(FORWARD_DELAY_ENV) or 0.0


def slowed(pipeline: Pipeline, seconds: float) -> Pipeline:
    """The same model, each forward pass `seconds` slower."""
    forward = pipeline.forward

    def slow(features: dict[str, Tensor]) -> Tensor:
        time.sleep(seconds)
        return forward(features)

    return dataclasses.replace(pipeline, forward=slow)
