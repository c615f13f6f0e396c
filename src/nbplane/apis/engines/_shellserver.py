"""Runs in a notebook API's shell process: an IPython shell (the one ``nbplane job run`` runs
steps in, :class:`~nbplane.jobs.shell.StepShell`) driven over a socket by
:mod:`nbplane.apis.engines.shell`, without a Jupyter kernel.

The fork server (:mod:`nbplane.apis.engines._forkserver`) calls :func:`prepare` once in the
template: it imports what cells need and builds the shell, so a forked child has a ready shell
that never ran a user's cell. Each child then calls :func:`serve` on its socket.

Protocol: every message is a 4-byte big-endian length and that many bytes of JSON. The engine
sends ``{"cells": [source, ...], "then": null | "keep" | "restore"}``; the shell runs the cells in
turn, stopping at the first that fails, and answers, in order: ``["o", kind, content]`` for each
output (kind and content as the IOPub message a kernel would send: ``stream``, ``display_data``,
``update_display_data``, ``execute_result``, ``error``, ``clear_output``), ``["c", ok,
execution_count]`` after each cell, and ``["d", ok]`` once ``then`` ran (``keep``: remember the
state the setup cells left; ``restore``: put it back, see :mod:`nbplane.apis.engines._baseline`);
the last cell's end goes out with ``d``, in one write.
Text a cell writes is sent when it flushes, when another output comes, every 0.1 s or 64 KiB,
and when the cell ends, so a cell that hangs or kills the process keeps what it wrote.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any

from nbplane.jobs.capture import Outputs

HEADER = struct.Struct("!I")
STREAM_HOLD_SECONDS = 0.1
STREAM_HOLD_BYTES = 1 << 16

WARM_UP = "__import__('nbplane').save_output({'warm': [1, 2.0, None]})\nprint('warm')"
"""A cell run once in the template, to load what a first cell loads."""

_shell: Any = None
"""The shell every child of the template starts with (a StepShell)."""


def prepare() -> None:
    """In the template: import what a cell needs and build the shell, then warm it up."""
    import contextlib

    import IPython.core.interactiveshell
    import IPython.display

    import nbplane.apis.engines._baseline
    import nbplane.apis.output  # save_output
    from nbplane.jobs.shell import StepShell

    for optional in ("IPython.utils._process_posix", "pexpect", "IPython.core.async_helpers"):
        with contextlib.suppress(Exception):  # an optional speed-up only (!cmd, await)
            __import__(optional)
    global _shell
    sys.argv = sys.argv[:1]  # a cell parsing arguments finds none, not the template's
    _shell = StepShell.instance(user_ns={})
    # A first cell costs IPython imports and caches of its own: pay them here (it binds no
    # name and, out of the history, counts nothing).
    _shell.run_source(WARM_UP, _Discard(), store_history=False)
    del IPython, nbplane


class Channel:
    """The child's end of the socket: length-prefixed JSON both ways."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()  # a cell's threads may print while the cell runs

    def send(self, *messages: list[Any]) -> None:
        """Send ``messages`` in one write (the engine reads them at one wake-up)."""
        framed = []
        for message in messages:
            payload = json.dumps(message, default=str).encode()
            framed += [HEADER.pack(len(payload)), payload]
        with self._lock:
            self.sock.sendall(b"".join(framed))

    def receive(self) -> dict[str, Any] | None:
        header = self._read(HEADER.size)
        if header is None:
            return None
        payload = self._read(HEADER.unpack(header)[0])
        return None if payload is None else dict(json.loads(payload))

    def _read(self, size: int) -> bytes | None:
        chunks, left = [], size
        while left:
            chunk = self.sock.recv(left)
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


class ChannelOutputs(Outputs):
    """A cell's outputs, sent to the engine as they come (text held back a little)."""

    def __init__(self, channel: Channel, execution_count: int) -> None:
        self.channel = channel
        self.execution_count = execution_count
        self.closed = False
        self._name: str | None = None
        self._held: list[str] = []
        self._size = 0
        self._since = 0.0

    def stream(self, name: str, text: str) -> None:
        if self.closed or not text:
            return
        if name != self._name:
            self.flush()
            self._name, self._since = name, time.monotonic()
        self._held.append(text)
        self._size += len(text)
        if self._size >= STREAM_HOLD_BYTES or time.monotonic() - self._since >= STREAM_HOLD_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._held and not self.closed:
            text, self._held, self._size = "".join(self._held), [], 0
            self._since = time.monotonic()
            self.channel.send(["o", "stream", {"name": self._name, "text": text}])

    def _send(self, kind: str, content: dict[str, Any]) -> None:
        if not self.closed:
            self.flush()
            self.channel.send(["o", kind, content])

    def display(
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None,
        display_id: str | None = None,
        update: bool = False,
    ) -> None:
        content: dict[str, Any] = {"data": data, "metadata": metadata or {}}
        if display_id:
            content["transient"] = {"display_id": display_id}
        self._send("update_display_data" if update else "display_data", content)

    def result(self, data: dict[str, Any], metadata: dict[str, Any] | None) -> None:
        content = {"data": data, "metadata": metadata or {}}
        self._send("execute_result", {**content, "execution_count": self.execution_count})

    def error(self, ename: str, evalue: str, traceback: list[str]) -> None:
        self._send("error", {"ename": ename, "evalue": evalue, "traceback": traceback})

    def clear(self, wait: bool) -> None:
        self._send("clear_output", {"wait": wait})

    def close(self) -> None:
        """The cell ended: what it wrote goes out; what its threads write later is dropped."""
        self.flush()
        self.closed = True


class _Discard(Outputs):
    def stream(self, name: str, text: str) -> None:
        pass

    def display(
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None,
        display_id: str | None = None,
        update: bool = False,
    ) -> None:
        pass

    def result(self, data: dict[str, Any], metadata: dict[str, Any] | None) -> None:
        pass

    def error(self, ename: str, evalue: str, traceback: list[str]) -> None:
        pass

    def clear(self, wait: bool) -> None:
        pass


def serve(fd: int) -> None:
    """Run the engine's requests on the socket ``fd`` until it closes."""
    from nbplane.apis.engines import _baseline

    signal.signal(signal.SIGINT, signal.default_int_handler)  # an interrupt stops the cell
    shell = _shell
    assert shell is not None, "prepare() runs in the template first"
    # Forked ahead, the shell waits for its request: copying the pages a cell touches (the
    # template's, shared until written) happens now rather than on the request's path.
    shell.run_source(WARM_UP, _Discard(), store_history=False)
    channel = Channel(socket.socket(fileno=fd))
    while (request := channel.receive()) is not None:
        ok = True
        cells: list[str] = request["cells"]
        last_end: list[list[Any]] = []
        for position, source in enumerate(cells):
            outputs = ChannelOutputs(channel, shell.execution_count)
            count = shell.execution_count
            ok = shell.run_source(source, outputs) is None
            outputs.close()
            last_end = [["c", ok, count]]
            if not ok or position == len(cells) - 1:
                break  # the last cell's end goes out with "d"
            channel.send(*last_end)
        then = request.get("then")
        try:
            if then == "keep" and ok:
                _baseline.keep()
            elif then == "restore":
                _baseline.restore()
            done = ok or then == "restore"
        except Exception:
            done = False
        channel.send(*last_end, ["d", done])
