"""Prometheus metrics of one runtime process, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Load-phase durations, readiness, request count/latency and the batching queue."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.phase_seconds = Gauge(
            "modeldeploy_load_phase_seconds",
            "Seconds spent in each start-up phase (import, fileIO, deserialize, ...).",
            ["phase"],
            registry=self.registry,
        )
        self.time_to_ready = Gauge(
            "modeldeploy_time_to_ready_seconds",
            "Seconds from process start to Ready.",
            registry=self.registry,
        )
        self.ready = Gauge(
            "modeldeploy_ready", "1 when the model is loaded, warm and validated.",
            registry=self.registry,
        )
        self.requests = Counter(
            "modeldeploy_requests_total", "HTTP requests by route and status code.",
            ["route", "code"], registry=self.registry,
        )
        self.latency = Histogram(
            "modeldeploy_request_duration_seconds", "HTTP request latency by route.",
            ["route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.queue_depth = Gauge(
            "modeldeploy_batch_queue_texts", "Texts waiting in the batching queue.",
            registry=self.registry,
        )
        self.queue_seconds = Histogram(
            "modeldeploy_batch_queue_seconds",
            "Seconds a request waited in the batching queue before its batch started.",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.batch_texts = Histogram(
            "modeldeploy_batch_size_texts", "Texts in one forward pass.",
            registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
        )
        self.batch_tokens = Histogram(
            "modeldeploy_batch_size_tokens", "Tokens (padded) in one forward pass.",
            registry=self.registry,
            buckets=(64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536),
        )

    def render(self) -> bytes:
        """The exposition text."""
        data: bytes = generate_latest(self.registry)
        return data
