"""Processes nbplane starts for users' code (job executions, Jupyter servers, Lab runs).

Each starts in its own process session, so a signal reaches it and its children together and
a Ctrl-C or a stop of the server's own group never does; it is stopped with SIGTERM and, when
it has not ended after a grace period, SIGKILL. A sandbox (:mod:`nbplane.platform.sandbox`)
decides how a signal reaches the processes inside it, so the sender is a parameter."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import psutil

POLL_SECONDS = 0.05
"""How often a stopping process is checked."""
START_TIME_TOLERANCE = 0.05
"""Seconds two readings of one process's start time may differ by (a reused pid's differ
more)."""

Sender = Callable[[int, int], None]
"""Sends a signal (second argument) to the processes started as a pid (first argument)."""


def start(
    argv: Sequence[str], *, cwd: Path, environment: Mapping[str, str], output: int
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in ``cwd`` with exactly ``environment`` in a new process session, no
    input, its output and errors to the file descriptor ``output``."""
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(environment),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def signal_group(pid: int, number: int) -> None:
    """Send ``number`` to the process group of ``pid`` (its session leader); gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, number)


async def terminate(
    pid: int, *, ended: Callable[[], bool], grace: float, send: Sender = signal_group
) -> bool:
    """SIGTERM ``pid``'s processes, wait up to ``grace`` seconds for ``ended()``, then SIGKILL
    them. True when they ended within the grace period."""
    send(pid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while loop.time() < deadline:
        if ended():
            return True
        await asyncio.sleep(POLL_SECONDS)
    send(pid, signal.SIGKILL)
    return False


def terminate_blocking(
    pid: int, *, ended: Callable[[], bool], grace: float, send: Sender = signal_group
) -> bool:
    """:func:`terminate` for code without an event loop (a worker thread, ``atexit``)."""
    return asyncio.run(terminate(pid, ended=ended, grace=grace, send=send))


def running(pid: int, started: float) -> psutil.Process | None:
    """The process ``pid`` if it is alive and is the one that started at ``started`` (a pid
    recorded by an earlier server may belong to another process by now)."""
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - started) > START_TIME_TOLERANCE:
            return None
    except (psutil.Error, ValueError):
        return None
    return process if alive(process) else None


def alive(process: psutil.Process) -> bool:
    """Running and not a zombie waiting for its parent."""
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
