"""The template process that forks ready-to-run IPython kernels or shells.

Run as ``python -m nbplane.apis.engines._forkserver [shell FD]`` by
:class:`~nbplane.apis.engines.forked.ForkServer`. It imports what its children need once
(ipykernel for kernels, IPython and nbplane's shell machinery for shells, see
:mod:`nbplane.apis.engines._shellserver`), then forks one child per request, so a child costs a
fork and its own set-up (a few ms for a shell, tens for a kernel) instead of an interpreter start
and all imports (about 0.35 CPU-s).

Protocol, one JSON object per line. Requests on stdin: ``{"id": n, "connection_file": path}``
(a kernel) or ``{"id": n}`` (a shell: the socket it talks over arrives just before, passed with
``SCM_RIGHTS`` over the socket FD). Answers on stdout: ``{"ready": pid}`` once, then
``{"id": n, "pid": pid}`` (or ``"error"``) per request, and ``{"exit": pid, "code": n}`` when a
child ends (``-N``: killed by signal N). End of stdin (nbplane stopped or died) kills every child
and ends the template.

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

Children forked from one template share its memory layout and hash seed: this isolates state
between executions, it is not a security sandbox.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
from typing import Any

KERNEL_ARGS = ["--HistoryManager.enabled=False", "--IPythonKernel._execute_sleep=0"]
"""Options for every ipykernel kernel of nbplane (forked or stock). History off: its database,
shared by all kernels of the user, would leak one request's code to the next and costs a write
per cell. No 0.5 ms sleep before each reply: it only papers over outputs arriving after the
reply, and nbplane reads IOPub up to the idle status, which comes after every output."""


def preimport_kernel() -> None:
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


def become_child(template_pid: int, channel: int | None = None) -> None:
    """Set up a just-forked child: its own session, no inherited descriptors but ``channel``
    (moved to descriptor 3), default signals, death with the template, stdin and stdout on
    /dev/null, no inherited ``atexit`` handlers, new random seeds."""
    os.setsid()
    if channel is not None:
        os.dup2(channel, 3)
    os.closerange(3 if channel is None else 4, 1 << 16)  # the template's pidfds and sockets
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
    import random

    atexit._clear()
    random.seed()
    try:
        numpy_random = sys.modules.get("numpy.random")
        if numpy_random is not None:
            numpy_random.seed()
    except Exception:
        pass


def kernel_child(connection_file: str) -> None:
    """Become a kernel (after :func:`become_child`)."""
    import logging

    from ipykernel.kernelapp import IPKernelApp

    sys.argv = [sys.executable, "-f", connection_file, *KERNEL_ARGS]
    app = IPKernelApp.instance()
    app.initialize(sys.argv[1:])
    # traitlets leaves the logger at DEBUG and filters in its handler: every debug call of
    # the kernel (four per cell) would build a record for nothing.
    app.log.setLevel(max(app.log.level, logging.WARNING))
    app.start()


def child(request: dict[str, Any], template_pid: int, channel: int | None) -> None:
    """Become a kernel or a shell; never returns."""
    code = 1
    try:
        become_child(template_pid, channel)
        if channel is None:
            kernel_child(request["connection_file"])
        else:
            from nbplane.apis.engines import _shellserver

            _shellserver.serve(3)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def main(argv: list[str]) -> None:
    """``argv``: empty for a kernel template, ``["shell", FD]`` for a shell template."""
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.getcwd():
        del sys.path[0]  # as ipykernel_launcher: the kernel adds '' back itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # nbplane stops us by closing stdin
    channels: socket.socket | None = None
    if argv[:1] == ["shell"]:
        channels = socket.socket(fileno=int(argv[1]))
        from nbplane.apis.engines import _shellserver

        _shellserver.prepare()
    else:
        preimport_kernel()
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
                channel: int | None = None
                if channels is not None:  # the shell's socket was sent before the request
                    _, fds, _, _ = socket.recv_fds(channels, 1, 1)
                    channel = fds[0]
                try:
                    child_pid = os.fork()
                except OSError as exc:
                    child_pid = -1
                    send({"id": request["id"], "error": str(exc)})
                if child_pid == 0:
                    child(request, pid, channel)
                if channel is not None:
                    os.close(channel)
                if child_pid < 0:
                    continue
                children[os.pidfd_open(child_pid)] = child_pid
                send({"id": request["id"], "pid": child_pid})


if __name__ == "__main__":
    main(sys.argv[1:])
