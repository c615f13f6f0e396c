"""The default engines: cells run on IPython shells driven directly, without a Jupyter kernel.

An API execution needs IPython's semantics for its cells (magics, ``!cmd``, ``display``,
top-level ``await``, a traceback at the user's cell and line), not the kernel protocol around
them, which costs more than a one-line cell. A shell is a process forked from a template that
imported IPython and built a shell (:mod:`nbplane.apis.engines._forkserver` in shell mode, see
:mod:`nbplane.apis.engines._shellserver`); the engine talks to it over a socket pair, sending
the cells of a request at once and reading each output as the kernel would have published it,
so a shell that hangs or dies keeps what it produced. Shells run ``python3`` only; a contract
that needs another kernel names a kernel engine.

- :class:`ShellIsolatedEngine` (``isolated``): a fresh shell per execution, forked ahead, used
  once and killed: nothing of one execution is seen by the next.
- :class:`ShellReuseEngine` (``reuse``): warm shells per notebook version that ran the setup
  cells once (see :mod:`nbplane.apis.engines.warm`); a request runs its own cells, then the
  namespace is put back.

Everything a shell sends is the notebook's code talking: sizes are bounded and shapes checked,
and a shell that breaks the protocol is killed and its execution failed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from typing import Any

from nbplane.apis.engines._shellserver import HEADER
from nbplane.apis.engines.base import (
    Engine,
    ExecutionRequest,
    KernelStartError,
    Reaper,
    Run,
    Stopper,
    cell_source,
)
from nbplane.apis.engines.forked import ForkedProcess, ForkServer
from nbplane.apis.engines.kernel import supervise
from nbplane.apis.engines.outputs import CellOutputs
from nbplane.apis.engines.warm import WarmEngine
from nbplane.settings import get_settings

log = logging.getLogger(__name__)

SHELL_KERNEL = "python3"
"""The one kernel name shells stand in for."""
MAX_MESSAGE = 64 << 20
"""Bytes of one message from a shell (an output); beyond, the shell is killed."""
_HANG_UPS = (asyncio.IncompleteReadError, ConnectionError)
"""What reading a shell whose socket closed raises."""

_OUTPUT_KINDS = frozenset(
    ("stream", "display_data", "update_display_data", "execute_result", "error", "clear_output")
)


class ProtocolError(Exception):
    """A shell sent something that is not the protocol."""


class Shell:
    """A forked shell process: its socket and how it ends."""

    def __init__(
        self, process: ForkedProcess, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.process = process
        self.reader = reader
        self.writer = writer
        self._disposed = False

    @property
    def alive(self) -> bool:
        return self.process.alive and not self._disposed

    async def run(self, run: Run, cells: list[int], stopper: Stopper, then: str | None) -> bool:
        """Run ``cells`` of ``run.notebook`` in order, stopping at the first error, then
        ``then`` (``keep`` or ``restore`` the namespace, or None).

        Returns whether the shell can take more work: False after a timeout, a cancel (it was
        interrupted and must be killed), its death or a broken protocol, which are recorded in
        ``run``, and when ``then`` failed.
        """
        run.notebook["metadata"]["language_info"] = _LANGUAGE_INFO
        if stopper.reason is not None:
            run.stopped(stopper.reason, None)
            return True  # nothing was sent: the shell is as it was
        sources = [cell_source(run.notebook["cells"][index]) for index in cells]
        payload = json.dumps({"cells": sources, "then": then}).encode()
        self.writer.write(HEADER.pack(len(payload)) + payload)
        work = asyncio.ensure_future(self._replies(run, cells))
        try:
            done = await supervise(
                run, work, stopper, self.process, "the shell", self._is_disposed, _HANG_UPS
            )
        except ProtocolError as problem:
            await self.dispose()
            cell = run.current_cell
            where = f" while cell {cell + 1} ran" if cell is not None else ""
            run.fail("kernel_died", f"the shell broke the protocol{where}: {problem}", cell)
            return False
        return done and bool(work.result())

    def _is_disposed(self) -> bool:
        return self._disposed

    async def _replies(self, run: Run, cells: list[int]) -> bool:
        """Read the shell's answers to one request into ``run``; how ``then`` went."""
        notebook_cells = run.notebook["cells"]
        position = 0
        sink = CellOutputs(run, notebook_cells[cells[0]]) if cells else None
        run.current_cell = cells[0] if cells else None
        while True:
            message = await self._receive()
            tag = message[0] if isinstance(message, list) and message else None
            if tag == "o" and sink is not None and len(message) == 3:
                kind, content = message[1], message[2]
                sink.take(kind, _checked_output(kind, content))
            elif tag == "c" and sink is not None and _is_cell_end(message):
                index = cells[position]
                notebook_cells[index]["execution_count"] = message[2]
                if not message[1]:
                    error = sink.last_error or {"ename": "Error", "evalue": "the cell failed"}
                    run.fail_exception(index, error)
                position += 1
                sink = None
                if position < len(cells) and message[1]:
                    run.current_cell = cells[position]
                    sink = CellOutputs(run, notebook_cells[cells[position]])
            elif tag == "d" and len(message) == 2 and isinstance(message[1], bool):
                if not run.failed:
                    run.current_cell = None
                return message[1]
            else:
                raise ProtocolError(f"unexpected message {_shorten(message)}")

    async def _receive(self) -> Any:
        (size,) = HEADER.unpack(await self.reader.readexactly(HEADER.size))
        if size > MAX_MESSAGE:
            raise ProtocolError(f"a message of {size} bytes (at most {MAX_MESSAGE})")
        try:
            return json.loads(await self.reader.readexactly(size))
        except ValueError as exc:
            raise ProtocolError(f"a message that is not JSON ({exc})") from None

    async def dispose(self) -> None:
        """Close the socket and kill the process (and what it started)."""
        if self._disposed:
            return
        self._disposed = True
        self.writer.close()
        await self.process.kill()


_LANGUAGE_INFO = {
    "name": "python",
    "version": ".".join(str(part) for part in __import__("sys").version_info[:3]),
    "mimetype": "text/x-python",
    "file_extension": ".py",
    "codemirror_mode": {"name": "ipython", "version": 3},
    "pygments_lexer": "ipython3",
    "nbconvert_exporter": "python",
}
"""What an IPython kernel of this interpreter reports, for the executed notebook's metadata."""


def _checked_output(kind: Any, content: Any) -> dict[str, Any]:
    """``content`` if it has the shape a kernel's message of ``kind`` has, else ProtocolError."""
    if kind not in _OUTPUT_KINDS or not isinstance(content, dict):
        raise ProtocolError(f"an output of kind {_shorten(kind)}")
    fine = True
    if kind == "stream":
        fine = content.get("name") in ("stdout", "stderr") and isinstance(content.get("text"), str)
    elif kind == "error":
        traceback = content.get("traceback")
        fine = (
            isinstance(content.get("ename"), str)
            and isinstance(content.get("evalue"), str)
            and isinstance(traceback, list)
            and all(isinstance(line, str) for line in traceback)
        )
    elif kind == "clear_output":
        fine = isinstance(content.get("wait"), bool)
    else:
        transient = content.get("transient", {})
        fine = (
            isinstance(content.get("data"), dict)
            and isinstance(content.get("metadata"), dict)
            and isinstance(transient, dict)
            and isinstance(transient.get("display_id", ""), str)
            and isinstance(content.get("execution_count"), (int, type(None)))
        )
    if not fine:
        raise ProtocolError(f"a malformed {kind} output")
    return content


def _is_cell_end(message: list[Any]) -> bool:
    return (
        len(message) == 3
        and isinstance(message[1], bool)
        and isinstance(message[2], int)
        and not isinstance(message[2], bool)
    )


def _shorten(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class ShellSource:
    """Forks shells from the template and ends them in the background."""

    def __init__(self, start_timeout: float = 60.0) -> None:
        self.server = ForkServer("shell", start_timeout)
        self._reaper = Reaper[Shell]("shell")

    async def start(self) -> None:
        await self.server.start()

    async def new_shell(self) -> Shell:
        """A fresh shell (KernelStartError if the template cannot fork one)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                pid, exited = await self.server.fork({}, theirs)
            finally:
                theirs.close()
            reader, writer = await asyncio.open_connection(sock=ours, limit=1 << 20)
        except BaseException:
            ours.close()
            raise
        shell = Shell(ForkedProcess(pid, exited, []), reader, writer)
        self._reaper.live.add(shell)
        return shell

    def dispose_soon(self, shell: Shell) -> None:
        """Kill ``shell`` in the background; ``stop`` waits for it."""
        self._reaper.dispose_soon(shell)

    async def stop(self) -> None:
        """Kill every shell still alive and the template, and wait until all are gone."""
        await self._reaper.stop()
        await self.server.stop()


def _check_kernel(request: ExecutionRequest) -> None:
    if request.kernel_name != SHELL_KERNEL:
        raise KernelStartError(
            f"the shell engines run {SHELL_KERNEL!r} only; choose kernel-isolated or "
            "kernel-reuse to run another kernel"
        )


def _pool_limits(pool_size: int) -> tuple[int, int, float]:
    """(pool_min, pool_max, idle seconds) from the settings, for a worker of ``pool_size``."""
    settings = get_settings()
    pool_max = settings.pool_max or pool_size
    return min(settings.pool_min, pool_max), pool_max, settings.pool_idle_seconds


class ShellIsolatedEngine(Engine):
    """A fresh shell per execution, forked ahead of requests, used once and killed.

    ``pool_min`` shells are kept forked ahead when idle; under load as many as were busy at
    once, up to ``pool_max``; after ``idle_seconds`` without a request the extra ones end. A
    request that finds none ready waits for the next fork (never more than one per request).
    """

    name = "isolated"

    def __init__(
        self,
        pool_min: int = 1,
        pool_max: int = 4,
        *,
        idle_seconds: float = 60.0,
        start_timeout: float = 60.0,
    ) -> None:
        super().__init__()
        if pool_max < 1 or not 0 <= pool_min <= pool_max:
            raise ValueError("need 0 <= pool_min <= pool_max and pool_max >= 1")
        self.pool_min, self.pool_max, self.idle_seconds = pool_min, pool_max, idle_seconds
        self.source = ShellSource(start_timeout)
        self._ready: asyncio.Queue[Shell | KernelStartError] = asyncio.Queue()
        self._forking: set[asyncio.Task[None]] = set()
        self._busy = 0
        self._waiting = 0
        self._peak = 0
        self._last_take = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def for_worker(cls, pool_size: int) -> ShellIsolatedEngine:
        pool_min, pool_max, idle = _pool_limits(pool_size)
        return cls(pool_min, pool_max, idle_seconds=idle)

    @property
    def ready_count(self) -> int:
        """Shells forked ahead and waiting (for tests and metrics)."""
        return self._ready.qsize()

    async def _start(self) -> None:
        await self.source.start()
        self._replenish()

    async def wait_ready(self) -> None:
        """Wait until the shells forked ahead are ready (for tests and benchmarks)."""
        while self._forking:
            await asyncio.wait(set(self._forking))

    async def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._forking):
            task.cancel()
        if self._forking:
            await asyncio.wait(set(self._forking))
        while not self._ready.empty():
            item = self._ready.get_nowait()
            if isinstance(item, Shell):
                self.source.dispose_soon(item)
        await self.source.stop()

    def _target(self) -> int:
        return max(self.pool_min, min(self.pool_max, self._peak)) + self._waiting

    def _replenish(self) -> None:
        while self._state != "stopped":
            if self._ready.qsize() + len(self._forking) >= self._target():
                return
            task = asyncio.ensure_future(self._fork())
            self._forking.add(task)
            task.add_done_callback(self._forking.discard)

    async def _fork(self) -> None:
        try:
            item: Shell | KernelStartError = await self.source.new_shell()
        except KernelStartError as exc:
            item = exc
        except Exception as exc:  # a bug or an OS error: the request that takes it reports it
            log.exception("forking a shell failed")
            item = KernelStartError(repr(exc))
        self._ready.put_nowait(item)

    async def _acquire(self) -> Shell:
        self._peak = max(self._peak, self._busy)
        self._last_take = time.monotonic()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.idle_seconds, self._shrink)
        self._waiting += 1
        try:
            while True:
                self._replenish()
                item = await self._ready.get()
                if isinstance(item, KernelStartError):
                    raise item
                if item.alive:
                    return item
                self.source.dispose_soon(item)  # died while waiting: take the next one
        finally:
            self._waiting -= 1
            self._replenish()

    def _shrink(self) -> None:
        """No request for ``idle_seconds``: keep only ``pool_min`` shells forked ahead."""
        self._timer = None
        loop = asyncio.get_running_loop()
        quiet = time.monotonic() - self._last_take
        if quiet < self.idle_seconds or self._busy:  # look again when it could be idle
            delay = self.idle_seconds - quiet if quiet < self.idle_seconds else self.idle_seconds
            self._timer = loop.call_later(delay, self._shrink)
            return
        self._peak = self._busy
        while self._ready.qsize() > self._target():
            item = self._ready.get_nowait()
            if isinstance(item, Shell):
                self.source.dispose_soon(item)

    async def _execute(self, run: Run, stopper: Stopper) -> None:
        began = time.perf_counter()
        _check_kernel(run.request)
        self._busy += 1
        try:
            shell = await stopper.guard(self._acquire())
        except BaseException:
            self._busy -= 1
            raise
        try:
            began = run.timed("engine_start", began)
            await shell.run(run, run.code_cells(), stopper, then=None)
            run.timed("cells", began)
        finally:
            self._busy -= 1
            self._last_take = time.monotonic()  # idle counts from the last execution's end
            self.source.dispose_soon(shell)


class ShellReuseEngine(WarmEngine[Shell]):
    """Warm shells per key that ran the setup cells once; requests run only their own cells.

    What persists between requests on one warm shell, and what is put back, is as for the kernel
    reuse engine (see :mod:`nbplane.apis.engines.reuse`): the namespace, builtins, output caches
    and last exception are put back; objects changed in place and the process's state are not.
    """

    name = "reuse"

    def __init__(
        self,
        pool_min: int = 1,
        pool_max: int = 4,
        *,
        idle_seconds: float = 60.0,
        max_keys: int = 16,
        setup_timeout: float = 600.0,
        start_timeout: float = 60.0,
    ) -> None:
        super().__init__(
            pool_min=pool_min,
            pool_max=pool_max,
            idle_seconds=idle_seconds,
            max_keys=max_keys,
            setup_timeout=setup_timeout,
        )
        self.source = ShellSource(start_timeout)

    @classmethod
    def for_worker(cls, pool_size: int) -> ShellReuseEngine:
        pool_min, pool_max, idle = _pool_limits(pool_size)
        return cls(pool_min, pool_max, idle_seconds=idle)

    async def _start(self) -> None:
        await self.source.start()

    async def _stop(self) -> None:
        await super()._stop()
        await self.source.stop()

    async def _new_runner(self, request: ExecutionRequest) -> Shell:
        _check_kernel(request)
        return await self.source.new_shell()

    async def _setup(self, runner: Shell, setup: Run, cells: list[int], stopper: Stopper) -> bool:
        kept = await runner.run(setup, cells, stopper, then="keep")
        if not kept and not setup.failed:
            setup.fail("unsupported_kernel", "the reuse engine could not keep the shell's state")
        return kept and not setup.failed

    async def _serve(self, runner: Shell, run: Run, cells: list[int], stopper: Stopper) -> bool:
        return await runner.run(run, cells, stopper, then="restore")

    def _alive(self, runner: Shell) -> bool:
        return runner.alive

    def _dispose(self, runner: Shell) -> None:
        self.source.dispose_soon(runner)
