"""Whether a recorded pid is still the harness's process, and stopping it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from modeldeploy_e2e import processes

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_a_running_process_whose_command_line_names_the_hint_is_alive() -> None:
    child = subprocess.Popen(SLEEPER)
    try:
        assert processes.alive(child.pid, "time.sleep(60)")
        # A pid recycled by another program: its command line does not name the hint.
        assert not processes.alive(child.pid, "kube-apiserver", exec_wait=0.2)
    finally:
        child.kill()
        child.wait()


def test_an_exited_unreaped_process_is_not_alive() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while processes.running(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    # Exited but not yet waited for: a zombie, which still has a /proc entry.
    assert os.path.exists(f"/proc/{child.pid}")
    assert not processes.alive(child.pid, sys.executable)
    child.wait()
    assert not processes.alive(child.pid, sys.executable)
    assert not processes.alive(None, sys.executable)


def test_terminate_group_stops_a_group_leader_and_a_process_that_leads_no_group() -> None:
    leader = subprocess.Popen(SLEEPER, start_new_session=True)
    member = subprocess.Popen(SLEEPER)  # in this process's group
    processes.terminate_group(leader.pid, grace=5)
    processes.terminate_group(member.pid, grace=5)
    # terminate_group reaps its children itself, so Popen no longer sees the exit status.
    assert not processes.running(leader.pid)
    assert not processes.running(member.pid)
    leader.wait(timeout=5)
    member.wait(timeout=5)
