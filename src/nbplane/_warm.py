"""The client side of the warm runner, and the protocol both ends speak.

A warm runner (``nbplane job warm start``, jobs/warm.py) has imported what a run needs and
forks a child per run, so a run skips the interpreter's imports of click, pydantic, SQLAlchemy
and IPython (about 0.35 s). This module imports only the standard library's cheapest modules:
it runs before anything else in every ``nbplane`` command (nbplane/_launch.py).

Protocol, on the Unix socket ``NBPLANE_HOME/warm.sock``: the client sends one request, a
4-byte big-endian length then JSON, with its fds 0, 1 and 2 attached (``SCM_RIGHTS``); the
runner answers JSON lines: ``{"pid": n}`` when the run's child started, then ``{"exit": n}``
(``-N``: killed by signal N), or ``{"refused": why}``. Both ends serve only their own uid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

SOCKET_NAME = "warm.sock"
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def nbplane_home() -> str:
    """NBPLANE_HOME as settings.py resolves it (pydantic-settings matches the variable's name
    case-insensitively, the last one wins), without importing pydantic."""
    home = os.path.join(os.path.expanduser("~"), ".nbplane")
    for key, value in os.environ.items():
        if key.upper() == "NBPLANE_HOME":
            home = value
    return home


def socket_path() -> str:
    return os.path.join(nbplane_home(), SOCKET_NAME)


def source_fingerprint() -> list[Any]:
    """nbplane's installed code: where it is, how many .py files and their newest mtime, so a
    runner that imported older code is never used (and exits)."""
    package = os.path.dirname(os.path.abspath(__file__))
    count, newest = 0, 0
    for directory, subdirectories, files in os.walk(package):
        subdirectories[:] = [name for name in subdirectories if name != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                count += 1
                newest = max(newest, os.stat(os.path.join(directory, name)).st_mtime_ns)
    return [package, count, newest]


def compatibility_key() -> dict[str, Any]:
    """What must be the same in the client and the runner for a fork of the runner to run the
    code the client would import: interpreter, module path, flags and nbplane's source. The
    script's directory (``sys.path[0]``) is left out: the child takes the client's whole path."""
    flags = sys.flags
    return {
        "executable": sys.executable,
        "path": sys.path[0 if flags.safe_path else 1 :],
        "flags": [flags.optimize, flags.dev_mode, flags.utf8_mode, flags.isolated],
        "options": [sys.warnoptions, sorted(map(str, sys._xoptions.items()))],
        "source": source_fingerprint(),
    }


def peer_is_same_user(connection: socket.socket) -> bool:
    """SO_PEERCRED: whether the process at the other end runs as our uid (the run's
    environment, secrets included, goes over this socket)."""
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
    return int.from_bytes(credentials[4:8], sys.byteorder) == os.getuid()


def send_message(connection: socket.socket, message: dict[str, Any], fds: list[int]) -> None:
    body = json.dumps(message).encode()
    data = len(body).to_bytes(4, "big") + body
    sent = socket.send_fds(connection, [data], fds) if fds else connection.send(data)
    if sent < len(data):  # (sending nothing to a runner that already answered is EPIPE)
        connection.sendall(data[sent:])


def receive_message(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One request and the fds attached to it."""
    data, fds, _, _ = socket.recv_fds(connection, 65536, 3)
    if len(data) < 4:
        raise ConnectionError("short request")
    size = int.from_bytes(data[:4], "big")
    while len(data) < size + 4:
        chunk = connection.recv(size + 4 - len(data))
        if not chunk:
            raise ConnectionError("request cut short")
        data += chunk
    message: dict[str, Any] = json.loads(data[4:])
    return message, fds


def request(path: str, kind: str) -> dict[str, Any] | None:
    """A short request (``status``, ``stop``) to the runner at ``path``; None without one."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(5)
            connection.connect(path)
            if not peer_is_same_user(connection):
                return None
            send_message(connection, {"kind": kind}, [])
            answer: dict[str, Any] = json.loads(connection.makefile("rb").readline())
            return answer
    except (OSError, ValueError):
        return None


def warm_run(argv: list[str]) -> int | None:
    """Run ``nbplane ARGV`` in a child of the warm runner: its exit code, or None when no runner
    took it (no socket, refused, different code, runner gone before the child started)."""
    path = socket_path()
    if not os.path.exists(path):
        return None
    pending: list[int] = []
    child: list[int] = []

    def forward(number: int, frame: object) -> None:
        if not child:
            pending.append(number)
            return
        # Its process group (the run's subprocesses too, as a terminal does), else the child
        # alone (not yet in its own session).
        for send in (os.killpg, os.kill):
            try:
                send(child[0], number)
                return
            except OSError:
                continue

    previous = {number: signal.signal(number, forward) for number in FORWARDED_SIGNALS}
    try:
        answers = _start(path, argv)
        started = None if answers is None else next(answers, None)
        if answers is None or started is None or "pid" not in started:
            return None
        child.append(started["pid"])
        for number in pending:
            forward(number, None)
        ended = next(answers, None)
        if ended is None or "exit" not in ended:
            _wait_gone(child[0])
            print("nbplane: the warm runner ended during the run", file=sys.stderr)
            return 1
        code: int = ended["exit"]
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if pending and not child:  # a signal came before any child could take it
            signal.raise_signal(pending[0])
    if code < 0:  # the child was killed by a signal: so are we, as a cold run would be
        signal.signal(-code, signal.SIG_DFL)
        signal.raise_signal(-code)
    return code


def _start(path: str, argv: list[str]) -> Iterator[dict[str, Any]] | None:
    """Send the run to the runner; an iterator of its answers, or None if it cannot take it."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
        if not peer_is_same_user(connection):
            connection.close()
            return None
        main = sys.modules.get("__main__")
        send_message(
            connection,
            {
                "kind": "run",
                "key": compatibility_key(),
                "argv": [sys.argv[0], *argv],
                "path": sys.path,
                "cwd": os.getcwd(),
                "environ": dict(os.environ),
                "main": {
                    "package": getattr(main, "__package__", None),
                    "file": getattr(main, "__file__", None),
                },
            },
            [0, 1, 2],
        )
    except OSError:
        connection.close()
        return None
    return _answers(connection)


def _answers(connection: socket.socket) -> Iterator[dict[str, Any]]:
    with connection, connection.makefile("rb") as answers:
        try:
            for line in answers:
                yield json.loads(line)
        except (OSError, ValueError):
            return


def _wait_gone(pid: int) -> None:
    """Wait for a child whose runner died (so no exit code comes) to end."""
    import time

    while True:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.05)
