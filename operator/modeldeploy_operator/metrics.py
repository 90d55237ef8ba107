"""The operator's Prometheus metrics: reconcile counts and durations."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

RECONCILES = Counter(
    "modeldeploy_reconciles_total", "Reconciles of ModelDeployments, by result.", ["result"]
)
RECONCILE_SECONDS = Histogram(
    "modeldeploy_reconcile_seconds",
    "Wall time of one reconcile (API calls and validation included).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def observe_reconcile(seconds: float, ok: bool) -> None:
    """Count one reconcile and its duration."""
    RECONCILES.labels(result="ok" if ok else "error").inc()
    RECONCILE_SECONDS.observe(seconds)


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Expose /metrics on `port` (0 disables it)."""
    if port:
        start_http_server(port, addr=host)
