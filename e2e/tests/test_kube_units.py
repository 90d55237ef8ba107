"""Kubeconfig resolution."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from modeldeploy_e2e.kube import load_endpoint


def write_config(path: Path, users: list[dict[str, object]]) -> Path:
    path.write_text(yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": {
            "server": "https://127.0.0.1:6443",
            "certificate-authority-data": base64.b64encode(b"CA PEM").decode()}}],
        "users": users,
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x"}))
    return path


def test_embedded_kubeconfig_data_is_written_to_files(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config", [{"name": "u", "user": {"token": "t0k"}}])
    endpoint = load_endpoint(config)
    assert endpoint.server == "https://127.0.0.1:6443"
    assert endpoint.token == "t0k"
    assert endpoint.ca_file is not None and Path(endpoint.ca_file).read_bytes() == b"CA PEM"


def test_unknown_context_names_the_fix(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config", [])
    with pytest.raises(ValueError, match="set current-context"):
        load_endpoint(config, context="other")

