"""platform/processes.py: a process in its own session, stopped with grace, then killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from nbplane.platform import processes

PARENT_OF_SLEEPER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print("started", flush=True)
time.sleep(60)
"""
IGNORES_SIGTERM = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("started", flush=True)
time.sleep(60)
"""


def started(code: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    log = tmp_path / "log"
    with log.open("wb") as output:
        child = processes.start(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            environment=os.environ,
            output=output.fileno(),
        )
    deadline = time.monotonic() + 30
    while b"started" not in log.read_bytes():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    return child


def test_a_process_starts_in_its_own_session(tmp_path: Path) -> None:
    child = started(IGNORES_SIGTERM, tmp_path)
    try:
        assert os.getsid(child.pid) == child.pid != os.getsid(0)
    finally:
        processes.signal_group(child.pid, signal.SIGKILL)
        child.wait()


def test_terminate_ends_the_group_within_grace(tmp_path: Path) -> None:
    child = started(PARENT_OF_SLEEPER, tmp_path)
    group = psutil.Process(child.pid).children(recursive=True)
    assert group, "the sleeper runs"
    ended = processes.terminate_blocking(
        child.pid, ended=lambda: child.poll() is not None, grace=10
    )
    assert ended and child.returncode == -signal.SIGTERM
    for member in group:
        member.wait(timeout=10)  # the group's SIGTERM reached the grandchild too


def test_terminate_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    child = started(IGNORES_SIGTERM, tmp_path)
    ended = processes.terminate_blocking(
        child.pid, ended=lambda: child.poll() is not None, grace=0.3
    )
    assert not ended
    assert child.wait(timeout=10) == -signal.SIGKILL


def test_signalling_a_gone_process_is_no_error(tmp_path: Path) -> None:
    child = started(IGNORES_SIGTERM, tmp_path)
    processes.signal_group(child.pid, signal.SIGKILL)
    child.wait()
    processes.signal_group(child.pid, signal.SIGTERM)
    assert processes.running(child.pid, time.time()) is None
