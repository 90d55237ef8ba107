"""main.parse_args: the operator's command line, as the Helm chart calls it."""

from __future__ import annotations

import os

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


def test_the_operator_starts_under_a_uid_without_a_passwd_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The images run as uid 65532, which their /etc/passwd does not list: kopf's default
    peer identity (getpass.getuser) would fail before the operator starts."""
    import getpass

    import kopf
    from modeldeploy_operator import main, metrics

    def no_passwd_entry() -> str:
        raise KeyError("getpwuid(): uid not found: 65532")

    started: dict[str, object] = {}
    monkeypatch.setattr(getpass, "getuser", no_passwd_entry)
    monkeypatch.setattr(metrics, "serve", lambda *args: None)
    monkeypatch.setattr(kopf, "run", lambda **kwargs: started.update(kwargs))
    assert main.main(["--namespace=models", "--standalone"]) == 0
    identity = started["identity"]
    assert isinstance(identity, str) and identity.endswith(f"/{os.getpid()}")
