"""The operator's Prometheus metrics: reconciles by outcome and duration, API requests."""

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


API_REQUESTS = Counter(
    "modeldeploy_api_requests_total",
    "Kubernetes API requests the operator made (watches excepted), by verb and resource.",
    ["verb", "resource"],
)


def observe_reconcile(seconds: float, result: str) -> None:
    """Count one reconcile by outcome (changed, unchanged, error) and its duration."""
    RECONCILES.labels(result=result).inc()
    RECONCILE_SECONDS.observe(seconds)


def count_api_request(verb: str, resource: str) -> None:
    """Count one request to the Kubernetes API."""
    API_REQUESTS.labels(verb=verb, resource=resource).inc()


def serve(port: int, host: str = "0.0.0.0") -> None:
    """Expose /metrics on `port` (0 disables it)."""
    if port:
        start_http_server(port, addr=host)
