"""Stage deadlines: the message the operator reads, and the timer that fires it."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from modeldeploy_contract.config import StageDeadlines
from modeldeploy_runtime import deadlines, termination


def test_an_overrun_message_starts_with_the_stages_reason_and_names_the_fix() -> None:
    text = deadlines.exceeded_message("load", 30.0)
    assert text.startswith("LoadDeadlineExceeded: the load stage did not finish within ")
    assert "stageDeadlineSeconds.load=30s" in text
    assert "raise spec.stageDeadlineSeconds.load" in text


def test_a_termination_reason_must_be_one_camel_case_word() -> None:
    assert termination.message("FetchFailed", "a\nb") == "FetchFailed: a b"
    with pytest.raises(ValueError, match="one CamelCase word"):
        termination.message("fetch failed", "x")


Fired = list[tuple[str, float]]


def _clock(**limits: float) -> tuple[deadlines.StageClock, Fired, threading.Event]:
    fired: Fired = []
    done = threading.Event()

    def on_exceeded(stage: deadlines.Stage, limit: float) -> None:
        fired.append((stage, limit))
        done.set()

    return deadlines.StageClock(StageDeadlines(**limits), on_exceeded), fired, done


def test_a_stage_that_overruns_fires_once_with_its_name_and_limit() -> None:
    clock, fired, done = _clock(warmup=0.05)
    clock.enter("warmup")
    assert done.wait(5)
    time.sleep(0.1)
    assert fired == [("warmup", 0.05)]


def test_moving_on_in_time_cancels_the_previous_stages_timer() -> None:
    clock, fired, _ = _clock(load=0.2, warmup=0.2)
    clock.enter("load")
    clock.enter("warmup")  # load finished in time
    clock.enter("validation")  # no deadline: nothing is watched any more
    time.sleep(0.4)
    clock.finish()
    assert fired == []


def test_finish_stops_watching() -> None:
    clock, fired, _ = _clock(validation=0.1)
    clock.enter("validation")
    clock.finish()
    time.sleep(0.3)
    assert fired == []


@pytest.mark.slow
def test_a_fetch_from_an_endpoint_that_never_answers_ends_at_its_deadline(
    helpers: Any, write_config: Any, tmp_path: Path,
) -> None:
    # A listening socket that never accepts: connections complete, requests hang.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        doc = helpers.runtime_config(
            "m", "v1", source={"s3": {"bucket": "models", "prefix": "m/v1/",
                                      "endpoint": f"http://127.0.0.1:{port}"}},
            stageDeadlineSeconds={"fetch": 2})
        log = tmp_path / "termination-log"
        started = time.monotonic()
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "not-a-secret"}
        result = helpers.run_cli("fetch", "--config", str(write_config(doc)),
                                 "--cache-root", str(tmp_path / "cache"),
                                 "--termination-log", str(log), env=env, timeout=60)
        took = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert log.read_text().startswith(
        "FetchDeadlineExceeded: the fetch stage did not finish within "
        "stageDeadlineSeconds.fetch=2s")
    assert took < 30, took
    assert not (tmp_path / "cache" / "m" / "v1").exists(), "a partial entry was left"
