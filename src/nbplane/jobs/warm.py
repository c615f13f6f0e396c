"""The warm runner: a background process that has imported what ``nbplane job run`` needs and
forks a child per run, so a local run skips about 0.35 s of imports (the API server's warm
pool, apis/engines/_forkserver.py, does the same for executions).

``nbplane job warm start`` launches it detached; the ``nbplane`` command's first module
(nbplane/_launch.py, with nbplane/_warm.py: the client and the protocol) hands it ``job run``
requests. One runner per home (a lock file), serving only its own uid on a 0600 socket in
NBPLANE_HOME. It exits after ``NBPLANE_WARM_IDLE_SECONDS`` without a run, on ``stop`` (after
its running children), or when nbplane's code changed since it started.

A child becomes the run: it takes the client's fds 0, 1, 2, working directory, environment,
``sys.path`` and arguments, and calls the CLI's ``main``; the runner reports its exit code.
Children share the runner's hash seed and memory layout: this saves imports, it is no sandbox.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import importlib
import io
import json
import locale
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nbplane import _warm
from nbplane.errors import NbplaneError

PRELOAD = (
    "nbplane.jobs.runner",
    "nbplane.jobs.shell",
    "nbplane.jobs.progress",
    "nbplane.jobs.models",
    "nbplane.jobs.job_input",
    "nbplane.jobs.ingestion",
    "nbplane.store.engine",
    "nbplane.store.runs",
    "IPython.core.interactiveshell",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql.psycopg",
    "psycopg",
)
"""What a run imports before its first step (tests/integration/test_startup_imports.py lists
it); the caller has imported the CLI itself. Optional ones (psycopg) may be missing."""

START_TIMEOUT_SECONDS = 30.0
MAX_SOCKET_PATH = 107
"""Bytes of a Unix socket's path (``sun_path`` holds 108, with the final NUL)."""


class WarmRunnerError(NbplaneError):
    exit_code = 1


def socket_path(home: Path) -> Path:
    return home / _warm.SOCKET_NAME


def status(home: Path) -> dict[str, Any] | None:
    """The runner of ``home``: pid, since when, runs served; None when none runs."""
    return _warm.request(str(socket_path(home)), "status")


def is_stale(state: dict[str, Any]) -> bool:
    """Whether nbplane's code changed since that runner started (it would refuse every run)."""
    return bool(state.get("source") != _warm.source_fingerprint())


def start(home: Path) -> dict[str, Any]:
    """Start the runner of ``home`` in the background unless a current one runs; its status.
    A stale one is stopped first."""
    running = status(home)
    if running is not None and not is_stale(running):
        return running
    if running is not None:
        stop(home)
    home = home.absolute()
    if len(os.fsencode(socket_path(home))) > MAX_SOCKET_PATH:
        raise WarmRunnerError(
            f"{socket_path(home)} is too long for a Unix socket ({MAX_SOCKET_PATH} bytes at "
            "most): use a shorter NBPLANE_HOME for a warm runner"
        )
    _private_directory(home)
    environment = {key: value for key, value in os.environ.items() if key.upper() != "NBPLANE_HOME"}
    with open(home / "warm.log", "ab") as log:
        process = subprocess.Popen(
            # -P: no script directory on sys.path; the children take the client's path.
            [sys.executable, "-P", "-c", "from nbplane.cli.jobs import serve_warm; serve_warm()"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd="/",  # holds no directory of the user's
            env={**environment, "NBPLANE_HOME": str(home)},
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        running = status(home)
        if running is not None:
            return running
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise WarmRunnerError(f"the warm runner did not start; see {home / 'warm.log'}")


def stop(home: Path) -> dict[str, Any] | None:
    """Ask the runner to exit (after its running children); the status it had, or None."""
    running = _warm.request(str(socket_path(home)), "stop")
    if running is None:
        return None
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while socket_path(home).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return running


def _private_directory(home: Path) -> None:
    """The socket's directory must be writable by us only: anyone who can write there could
    put their own socket in the runner's place and read the environments sent to it."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = home.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise WarmRunnerError(
            f"{home} (NBPLANE_HOME) must be owned by you and writable by you only for a warm "
            f"runner; chmod go-w {home}"
        )


def serve(home: Path, idle_seconds: float, entry: Callable[[], None]) -> None:
    """The runner's life: preload, listen, fork a child per run calling ``entry``."""
    _private_directory(home)
    lock = open(home / "warm.lock", "w")  # noqa: SIM115 - held for the runner's whole life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return  # another runner serves this home
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(0))
    _preload()
    if threading.active_count() != 1:
        raise WarmRunnerError("a thread was started by an import; cannot fork runs")
    key = _warm.compatibility_key()
    gc.collect()
    gc.freeze()  # the imported objects' pages stay shared with the children
    path = socket_path(home)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    temporary = home / f"warm.sock.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    listener.bind(str(temporary))
    os.chmod(temporary, 0o600)
    listener.listen(16)
    os.replace(temporary, path)  # clients never see a socket not yet listening
    print(f"{_now()} warm runner {os.getpid()} serving {path}", flush=True)
    runner = _Runner(key, entry)
    try:
        runner.loop(listener, idle_seconds)
    finally:
        path.unlink(missing_ok=True)
        listener.close()
        lock.close()  # a new runner may start while this one's last runs end
        runner.finish()
        print(f"{_now()} warm runner {os.getpid()} exited ({runner.served} runs)", flush=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _preload() -> None:
    for module in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)


class _Runner:
    def __init__(self, key: dict[str, Any], entry: Callable[[], None]) -> None:
        self.key, self.entry = key, entry
        self.started = _now()
        self.served = 0
        self.children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> pid, client
        self.stopping = False

    def loop(self, listener: socket.socket, idle_seconds: float) -> None:
        last = time.monotonic()
        while not self.stopping:
            remaining = last + idle_seconds - time.monotonic()
            if remaining <= 0 and not self.children:
                return
            readable, _, _ = select.select(
                [listener.fileno(), *self.children], [], [], max(remaining, 0) or None
            )
            for fd in readable:
                if fd == listener.fileno():
                    connection, _ = listener.accept()
                    try:
                        self.answer(connection)
                    except (OSError, ValueError) as exc:  # that client's problem only
                        print(f"{_now()} request refused: {exc!r}", flush=True)
                    last = time.monotonic()
                else:
                    self.reap(fd)
                    last = time.monotonic()

    def answer(self, connection: socket.socket) -> None:
        fds: list[int] = []
        keep = False
        try:
            if not _warm.peer_is_same_user(connection):
                return
            connection.settimeout(5)
            message, fds = _warm.receive_message(connection)
            kind = message.get("kind")
            if kind == "status":
                self.reply(connection, self.describe())
            elif kind == "stop":
                self.reply(connection, self.describe())
                self.stopping = True
            elif kind == "run" and len(fds) == 3:
                if message.get("key") != self.key:
                    self.reply(connection, {"refused": "different interpreter, path or code"})
                    # A runner whose code changed on disk will never serve again.
                    self.stopping = _warm.source_fingerprint() != self.key["source"]
                    return
                self.fork(connection, message, fds)
                keep = True
        finally:
            for fd in fds:
                os.close(fd)
            if not keep:
                connection.close()

    def describe(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "since": self.started,
            "served": self.served,
            "source": self.key["source"],
        }

    @staticmethod
    def reply(connection: socket.socket, message: dict[str, Any]) -> None:
        connection.sendall((json.dumps(message) + "\n").encode())

    def fork(self, connection: socket.socket, message: dict[str, Any], fds: list[int]) -> None:
        pid = os.fork()
        if pid == 0:
            _child(message, fds, self.entry)
        self.served += 1
        connection.settimeout(None)
        self.children[os.pidfd_open(pid)] = (pid, connection)
        with contextlib.suppress(OSError):
            self.reply(connection, {"pid": pid})

    def reap(self, pidfd: int) -> None:
        pid, connection = self.children.pop(pidfd)
        _, wait_status = os.waitpid(pid, 0)
        os.close(pidfd)
        with contextlib.suppress(OSError):
            self.reply(connection, {"exit": os.waitstatus_to_exitcode(wait_status)})
        connection.close()

    def finish(self) -> None:
        """Let running children end (a stop must not cut a run) and report them."""
        while self.children:
            readable, _, _ = select.select(list(self.children), [], [])
            for fd in readable:
                self.reap(fd)


def _child(message: dict[str, Any], fds: list[int], entry: Callable[[], None]) -> None:
    """Become the client's run; never returns into the runner."""
    code = 1
    try:
        os.setsid()  # its own process group: the client's signals reach its subprocesses too
        for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(number, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        os.closerange(3, 1 << 16)  # the socket, other runs' connections and pidfds
        os.chdir(message["cwd"])
        os.environ.clear()
        os.environ.update(message["environ"])
        with contextlib.suppress(locale.Error):
            locale.setlocale(locale.LC_CTYPE, "")
        _reopen_stdio()
        sys.path[:] = message["path"]
        sys.argv[:] = message["argv"]
        main = types.ModuleType("__main__")  # click names the program after it
        main.__package__ = message["main"]["package"]
        main.__file__ = message["main"]["file"]
        sys.modules["__main__"] = main
        import random

        random.seed()
        from nbplane.settings import get_settings

        get_settings.cache_clear()
        try:
            entry()
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
        import atexit

        atexit._run_exitfuncs()
    except SystemExit as exc:
        code = _exit_code(exc)
    except KeyboardInterrupt:
        code = 130
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _exit_code(exc: SystemExit) -> int:
    """As the interpreter turns ``sys.exit(value)`` into a status."""
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return 1


def _reopen_stdio() -> None:
    """New sys.stdin/out/err on the client's fds, buffered as the interpreter would make them
    for those files and that environment (line-buffered on a terminal)."""
    encoding, _, errors = os.environ.get("PYTHONIOENCODING", "").partition(":")
    encoding = encoding or locale.getpreferredencoding(False)
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    streams = []
    for fd, mode in ((0, "r"), (1, "w"), (2, "w")):
        raw = io.FileIO(fd, mode, closefd=False)
        buffered: Any = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
        streams.append(
            io.TextIOWrapper(
                buffered,
                encoding=encoding,
                errors=errors or ("backslashreplace" if fd == 2 else "strict"),
                line_buffering=fd == 2 or (mode == "w" and raw.isatty()),
                write_through=unbuffered or fd == 2,
            )
        )
    sys.stdin, sys.stdout, sys.stderr = streams
    for name, stream in zip(("__stdin__", "__stdout__", "__stderr__"), streams, strict=True):
        setattr(sys, name, stream)  # what code that bypasses redirections writes to
