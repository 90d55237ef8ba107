"""Endpoint selection of the traffic helper follows kube-proxy's rules."""

from __future__ import annotations

import pytest
from modeldeploy_e2e.traffic import label_selector, ready_endpoints, service_port_name

SERVICE = {
    "metadata": {"name": "web"},
    "spec": {
        "selector": {"app": "web"},
        "ports": [
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "metrics", "port": 9090, "targetPort": 9091},
        ],
    },
}


def pod(ip: str, ready: str = "True", **extra: object) -> dict[str, object]:
    metadata: dict[str, object] = {"name": f"web-{ip}"}
    if extra.get("terminating"):
        metadata["deletionTimestamp"] = "2026-11-22T00:00:00Z"
    return {
        "metadata": metadata,
        "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {
            "podIP": ip,
            "phase": extra.get("phase", "Running"),
            "conditions": [{"type": "Ready", "status": ready}],
        },
    }


PODS = [
    pod("127.100.0.2"),
    pod("127.100.0.3", ready="False"),
    pod("127.100.0.4", terminating=True),
    pod("127.100.0.5"),
    pod("127.100.0.6", phase="Succeeded"),
]


def test_only_ready_not_terminating_pods_receive_traffic() -> None:
    assert ready_endpoints(SERVICE, PODS, "http") == [("127.100.0.2", 8080), ("127.100.0.5", 8080)]


def test_named_and_numbered_target_ports_are_resolved_per_pod() -> None:
    assert ready_endpoints(SERVICE, PODS, 9090) == [("127.100.0.2", 9091), ("127.100.0.5", 9091)]


def test_a_pod_without_an_ip_or_readiness_is_not_an_endpoint() -> None:
    no_ip = pod("")
    assert ready_endpoints(SERVICE, [no_ip, pod("127.100.0.9", ready="Unknown")], "http") == []


def test_selector_becomes_a_label_query_and_selectorless_services_are_refused() -> None:
    assert label_selector(SERVICE) == "app=web"
    with pytest.raises(ValueError, match="no selector"):
        label_selector({"metadata": {"name": "x"}, "spec": {}})


def test_service_port_is_chosen_by_number_or_name() -> None:
    service = {
        "metadata": {"name": "web"},
        "spec": {"ports": [{"name": "http", "port": 80}, {"name": "m", "port": 9090}]},
    }
    assert service_port_name(service, 80) == "http"
    assert service_port_name(service, "m") == "m"
    with pytest.raises(ValueError, match="no port 81"):
        service_port_name(service, 81)
    single = {"metadata": {"name": "one"}, "spec": {"ports": [{"port": 80}]}}
    assert service_port_name(single, None) == ""
