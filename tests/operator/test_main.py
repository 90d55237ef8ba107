"""main.parse_args: the operator's command line, as the Helm chart calls it."""

from __future__ import annotations

import pytest
from modeldeploy_operator.main import parse_args


def test_the_chart_command_line_parses() -> None:
    args = parse_args(
        [
            "--namespace=models",
            "--namespace=staging",
            "--log-format=json",
            "--log-level=info",
            "--liveness=http://0.0.0.0:8081/healthz",
            "--metrics-port=9090",
            "--peering=modeldeploy",
            "--priority=100",
        ]
    )
    assert args.namespace == ["models", "staging"] and not args.all_namespaces
    assert args.log_format == "json" and args.metrics_port == 9090
    assert (args.peering, args.priority) == ("modeldeploy", 100)


def test_a_scope_is_required_and_namespaces_exclude_all_namespaces(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parse_args([])
    with pytest.raises(SystemExit):
        parse_args(["-n", "a", "--all-namespaces"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_priority_without_peering_is_refused_with_the_fix(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parse_args(["-A", "--standalone", "--priority", "5"])
    assert "--priority needs --peering NAME" in capsys.readouterr().err


def test_default_runtime_image_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELDEPLOY_DEFAULT_RUNTIME_IMAGE", "registry.local/runtime:9")
    assert parse_args(["-A"]).default_runtime_image == "registry.local/runtime:9"
