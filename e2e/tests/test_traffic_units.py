"""Endpoint selection of the traffic helper follows kube-proxy's rules."""

from __future__ import annotations

import pytest
from modeldeploy_e2e.traffic import ready_endpoints, service_port_name

SLICE = {
    "addressType": "IPv4",
    "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}],
    "endpoints": [
        {"addresses": ["10.244.0.2"], "conditions": {"ready": True}},
        {"addresses": ["10.244.0.3"], "conditions": {"ready": False}},
        {"addresses": ["10.244.0.4"], "conditions": {"ready": True, "terminating": True}},
        {"addresses": ["10.244.0.5"], "conditions": {}},
    ],
}


def test_only_ready_not_terminating_endpoints_receive_traffic() -> None:
    assert ready_endpoints([SLICE], "http") == [("10.244.0.2", 8080), ("10.244.0.5", 8080)]
    assert ready_endpoints([SLICE], "metrics") == [("10.244.0.2", 9090), ("10.244.0.5", 9090)]
    assert ready_endpoints([SLICE], "absent") == []


def test_service_port_is_chosen_by_number_or_name() -> None:
    service = {"metadata": {"name": "web"},
               "spec": {"ports": [{"name": "http", "port": 80}, {"name": "m", "port": 9090}]}}
    assert service_port_name(service, 80) == "http"
    assert service_port_name(service, "m") == "m"
    with pytest.raises(ValueError, match="no port 81"):
        service_port_name(service, 81)
    single = {"metadata": {"name": "one"}, "spec": {"ports": [{"port": 80}]}}
    assert service_port_name(single, None) == ""
