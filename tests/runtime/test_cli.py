"""CLI wiring: flags fall back to the operator's environment variables; failures are
reported on the termination log even for a bad config; an unwritable log is not fatal."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_runtime import cli, termination


def test_serve_flags_fall_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELDEPLOY_CONFIG", "/cfg/runtime.json")
    monkeypatch.setenv("MODELDEPLOY_HOST", "10.1.2.3")
    monkeypatch.setenv("MODELDEPLOY_PORT", "9123")
    monkeypatch.setenv("MODELDEPLOY_CACHE_ROOT", "/cache")
    args = cli._parser().parse_args(["serve"])
    assert (args.config, args.host, args.port, args.cache_root) == (
        "/cfg/runtime.json", "10.1.2.3", 9123, "/cache")
    assert args.termination_log == "/dev/termination-log"
    flags = cli._parser().parse_args(["serve", "--host", "127.0.0.2", "--port", "1"])
    assert (flags.host, flags.port) == ("127.0.0.2", 1)


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODELDEPLOY_CONFIG", "MODELDEPLOY_HOST", "MODELDEPLOY_PORT",
                 "MODELDEPLOY_CACHE_ROOT"):
        monkeypatch.delenv(name, raising=False)
    args = cli._parser().parse_args(["fetch"])
    assert args.config == "/etc/modeldeploy/runtime.json" and args.cache_root is None


def test_an_invalid_config_exits_1_and_names_the_key_in_the_termination_log(
    helpers: Any, write_config: Any, tmp_path: Path,
) -> None:
    doc = helpers.runtime_config(tpyo=1)
    log = tmp_path / "term"
    result = helpers.run_cli("fetch", "--config", str(write_config(doc)),
                             "--termination-log", str(log))
    assert result.returncode == 1
    assert "unknown key 'tpyo'" in log.read_text()
    assert "unknown key 'tpyo'" in result.stderr


def test_an_unwritable_termination_log_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        termination.write_reason(tmp_path / "no-such-dir" / "log", "boom")
    assert "could not write the termination message" in caplog.text


def test_the_termination_message_is_one_line_and_bounded(tmp_path: Path) -> None:
    log = tmp_path / "log"
    termination.write_reason(log, "first line\nsecond line " + "x" * 10_000)
    text = log.read_text()
    assert text.count("\n") == 1 and text.startswith("first line second line")
    assert len(text.encode()) <= 4096
