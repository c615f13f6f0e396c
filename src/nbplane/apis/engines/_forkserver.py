"""The template process that forks ready-to-initialise IPython kernels.

Run as ``python -m nbplane.apis.engines._forkserver`` by ``ForkedKernelFactory``
(engines/forked.py).
It imports ipykernel, IPython and their dependencies once, then forks one child per kernel, so a
kernel costs a fork and ipykernel's set-up (tens of ms) instead of an interpreter start and all
imports (about 0.35 CPU-s).

Protocol, one JSON object per line. Requests on stdin: ``{"id": n, "connection_file": path}``.
Answers on stdout: ``{"ready": pid}`` once, then ``{"id": n, "pid": pid}`` (or ``"error"``) per
request, and ``{"exit": pid, "code": n}`` when a child ends (``-N``: killed by signal N). End
of stdin (nbplane stopped or died) kills every child and ends the template.

Why it is careful (each point was a real failure when forking kernels):
- no ZMQ context, event loop or thread exists in the template: a forked context or a lock held
  by another thread breaks the child; the template checks it is single-threaded before forking;
- a child never returns into the template's code: it ends with ``os._exit``, after clearing the
  inherited ``atexit`` handlers;
- each child gets its own session (so an interrupt reaches only it and a kill reaches its own
  subprocesses too), default signal handlers, new random seeds, stdin/stdout on /dev/null, and
  dies with the template (``PR_SET_PDEATHSIG``);
- IPython history is off: its shared SQLite database would leak one request's code to the next;
- children are reaped here, through pidfds, and their end is reported to nbplane.

Kernels forked from one template share its memory layout and hash seed: this isolates state
between executions, it is not a security sandbox.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
from typing import Any

KERNEL_ARGS = ["--HistoryManager.enabled=False", "--IPythonKernel._execute_sleep=0"]
"""Options for every ipykernel kernel of nbplane (forked or stock). History off: its database,
shared by all kernels of the user, would leak one request's code to the next and costs a write
per cell. No 0.5 ms sleep before each reply: it only papers over outputs arriving after the
reply, and nbplane reads IOPub up to the idle status, which comes after every output."""


def preimport() -> None:
    """Import what a kernel needs, so that each child starts with it in memory.

    Besides ipykernel itself, the modules a kernel imports while it initialises (measured):
    each one left out costs every kernel its import again.
    """
    import ipykernel.ipkernel
    import ipykernel.kernelapp
    import ipykernel.zmqshell
    import IPython.core.interactiveshell

    for optional in (
        "debugpy",
        "jedi",
        "comm",
        "ipykernel.debugger",
        "ipykernel.comm",
        "IPython.core.completer",
        "IPython.core.completerlib",
        "IPython.core.debugger",
        "IPython.core.oinspect",
        "IPython.extensions.storemagic",
        "IPython.utils.wildcard",
        "IPython.display",
        "pdb",
        "tornado.platform.asyncio",
        "faulthandler",
        "nbplane.apis.output",  # save_output
        "nbplane.apis.engines._incell",  # the reuse engine's request cells
    ):
        with contextlib.suppress(Exception):  # an optional speed-up only
            __import__(optional)
    del ipykernel, IPython


def send(message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(1, data) :]


def child(connection_file: str, template_pid: int) -> None:
    """Become a kernel; never returns."""
    code = 1
    try:
        os.setsid()
        os.closerange(3, 1 << 16)  # the template's pidfds of other children
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(number, signal.SIG_DFL)
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the template
        except Exception:
            pass
        if os.getppid() != template_pid:
            os._exit(1)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
        os.close(null)
        import atexit
        import logging
        import random

        atexit._clear()
        random.seed()
        try:
            numpy_random = sys.modules.get("numpy.random")
            if numpy_random is not None:
                numpy_random.seed()
        except Exception:
            pass
        from ipykernel.kernelapp import IPKernelApp

        sys.argv = [sys.executable, "-f", connection_file, *KERNEL_ARGS]
        app = IPKernelApp.instance()
        app.initialize(sys.argv[1:])
        # traitlets leaves the logger at DEBUG and filters in its handler: every debug call of
        # the kernel (four per cell) would build a record for nothing.
        app.log.setLevel(max(app.log.level, logging.WARNING))
        app.start()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def main() -> None:
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.getcwd():
        del sys.path[0]  # as ipykernel_launcher: the kernel adds '' back itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # nbplane stops us by closing stdin
    preimport()
    import gc
    import threading

    if threading.active_count() != 1:
        raise SystemExit("nbplane fork server: a thread was started by an import; cannot fork")
    gc.collect()
    gc.freeze()  # keep the imported objects' pages shared with the children
    pid = os.getpid()
    children: dict[int, int] = {}  # pidfd -> pid
    buffer = b""
    send({"ready": pid})
    while True:
        readable, _, _ = select.select([0, *children], [], [])
        for fd in readable:
            if fd != 0:
                child_pid = children.pop(fd)
                _, status = os.waitpid(child_pid, 0)
                os.close(fd)
                send({"exit": child_pid, "code": os.waitstatus_to_exitcode(status)})
                continue
            chunk = os.read(0, 65536)
            if not chunk:
                for child_pid in children.values():
                    with contextlib.suppress(OSError):
                        os.killpg(child_pid, signal.SIGKILL)
                os._exit(0)
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                try:
                    child_pid = os.fork()
                except OSError as exc:
                    send({"id": request["id"], "error": str(exc)})
                    continue
                if child_pid == 0:
                    child(request["connection_file"], pid)
                children[os.pidfd_open(child_pid)] = child_pid
                send({"id": request["id"], "pid": child_pid})


if __name__ == "__main__":
    main()
