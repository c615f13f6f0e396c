"""Kernels for the engines: start them, run cells in them, pool them, end them.

A :class:`Kernel` is a started, ready kernel with its client (jupyter_client's
``AsyncKernelClient``) and its process. A :class:`KernelFactory` makes kernels: the
:class:`StockKernelFactory` starts any kernelspec through jupyter_client's
``AsyncKernelManager``; the :class:`~nbplane.apis.engines.forked.ForkedKernelFactory` forks
ipykernel kernels from a template process (about ten times cheaper). :class:`KernelProvider`
picks the factory per kernel name and ends kernels in the background; :class:`KernelPool` keeps
kernels started ahead of requests, so start-up stays off the request path.

Cells run one at a time: ipykernel aborts queued requests after an error only if they already
arrived, so sending the next cell before the previous one finished could run it after a failure.
The reuse engine may instead send its request cells as one request that runs them in turn
(:mod:`nbplane.apis.engines._incell`). A kernel's death is noticed from its process (a pidfd, or the
fork server's report), not from heartbeats, so a dead kernel ends its execution within
milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from hmac import compare_digest
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.session import DELIM, Session

from nbplane.apis.engines._forkserver import KERNEL_ARGS
from nbplane.apis.engines._incell import CELL_END
from nbplane.apis.engines.base import (
    OUTPUT_MIMETYPE,
    KernelStartError,
    Run,
    Stopper,
    cell_source,
)
from nbplane.platform.sandbox import without_nbplane_settings

log = logging.getLogger(__name__)


INCELL_MODULE = "nbplane.apis.engines._incell"

INTERRUPT_GRACE = 0.5
"""Seconds an interrupted cell gets to report its KeyboardInterrupt before the kernel is killed."""

DEATH_GRACE = 0.1
"""Seconds to take in the messages a dead kernel sent just before it died."""


def describe_exit(code: int | None) -> str:
    if code is None:
        return "the kernel exited"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the kernel was killed by {name}"
    return f"the kernel exited with code {code}"


def ipykernel_argv(spec: KernelSpec) -> tuple[list[str], list[str]] | None:
    """For a kernelspec that runs ipykernel: (interpreter options, arguments after the module)."""
    argv = list(spec.argv)
    if "-m" not in argv:
        return None
    module = argv.index("-m")
    if argv[module + 1 : module + 2] not in (["ipykernel_launcher"], ["ipykernel"]):
        return None
    return argv[1:module], argv[module + 2 :]


def watch_pid(pid: int) -> asyncio.Future[None]:
    """A future resolved when process ``pid`` ends (a pidfd in the event loop: no polling)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        future.set_result(None)
        return future

    def ended() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        if not future.done():
            future.set_result(None)

    loop.add_reader(fd, ended)

    def cancelled(done: asyncio.Future[None]) -> None:
        if done.cancelled():
            loop.remove_reader(fd)
            os.close(fd)

    future.add_done_callback(cancelled)
    return future


class KernelProcess(ABC):
    """The process side of a kernel: interrupt it, see it end, kill it."""

    exited: asyncio.Future[int | None]
    """Resolved with the exit code (negative: killed by that signal; None: unknown)."""

    @property
    def alive(self) -> bool:
        return not self.exited.done()

    @abstractmethod
    async def interrupt(self) -> None: ...

    @abstractmethod
    async def kill(self) -> None:
        """Kill the kernel (and what it started), wait for its end, release its files."""


class Kernel:
    """A started, ready kernel: what an engine runs cells in."""

    def __init__(
        self,
        kernel_name: str,
        client: AsyncKernelClient,
        process: KernelProcess,
        info: dict[str, Any],
        *,
        runs_nbplane: bool = False,
    ) -> None:
        self.kernel_name = kernel_name
        self.client = client
        self.process = process
        self.info = info
        """Content of the kernel's kernel_info_reply (language_info and so on)."""
        self.runs_nbplane = runs_nbplane
        """An IPython kernel of nbplane's Python: it imports ``nbplane.apis.engines._incell``."""
        self._disposed = False

    @property
    def alive(self) -> bool:
        return self.process.alive and not self._disposed

    async def run(
        self,
        run: Run,
        cells: list[int],
        stopper: Stopper,
        *,
        store_history: bool = True,
        together: bool = False,
        then: str | None = None,
    ) -> bool:
        """Run ``cells`` of ``run.notebook`` in order, stopping at the first error.

        ``together`` sends them as one execute request when the kernel can (see
        :mod:`nbplane.apis.engines._incell`): same outputs, about 3 ms less per cell; those cells do
        not enter IPython's history (``store_history`` applies to cells sent one by one).
        ``then``: an expression of the engine's own housekeeping, evaluated after the cells
        whether they failed or not (as a user expression of the last request when it can be,
        which costs no extra round trip; else as a silent request of its own).
        Returns whether the kernel can take more work: False after a timeout, a cancel (the
        kernel was interrupted and must be killed) or its death, which are recorded in ``run``,
        and when ``then`` raised.
        """
        metadata = run.notebook["metadata"]
        if "language_info" in self.info:
            metadata["language_info"] = self.info["language_info"]
        if stopper.reason is not None:
            run.stopped(stopper.reason, None)
            return False
        if not cells:
            return then is None or await self.run_quietly(then, stopper)
        if together and self.can_run_together(run, cells):
            work = asyncio.ensure_future(self._run_together(run, cells, then))
        else:
            work = asyncio.ensure_future(self._run_cells(run, cells, store_history, then))
        exited = self.process.exited
        try:
            await asyncio.wait((work, stopper.future, exited), return_when=asyncio.FIRST_COMPLETED)
            cell = run.current_cell
            if work.done():
                if not work.cancelled() and work.exception() is None:
                    evaluated = work.result()
                    if then is None:
                        return True
                    if evaluated is None:  # a cell's request failed before it got there
                        return await self.run_quietly(then, stopper)
                    return evaluated
                if not self._disposed and not exited.done():
                    work.result()  # raises: a bug of ours, not the user's

            if stopper.future.done() and not work.done():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.process.interrupt(), INTERRUPT_GRACE)
                await asyncio.wait((work, exited), timeout=INTERRUPT_GRACE)
                run.stopped(stopper.future.result(), cell)
                return False
            await asyncio.wait((work,), timeout=DEATH_GRACE)
            if self._disposed and not exited.done():
                message = "the kernel was shut down: the engine is stopping"
                run.fail("kernel_died", message, cell)
                return False
            code = exited.result()
            where = f" while cell {cell} ran" if cell is not None else ""
            run.fail("kernel_died", f"{describe_exit(code)}{where}", cell, exit_code=code)
            return False
        finally:
            if not work.done():
                work.cancel()
                await asyncio.wait((work,))

    def can_run_together(self, run: Run, cells: list[int]) -> bool:
        """Whether ``cells`` may go as one request: an IPython kernel that can import nbplane,
        more than one cell, and no top-level ``await`` (IPython cannot nest it in a cell)."""
        if not self.runs_nbplane or len(cells) < 2:
            return False
        sources = (cell_source(run.notebook["cells"][index]) for index in cells)
        return not any("await" in source or "async" in source for source in sources)

    async def _run_cells(
        self, run: Run, cells: list[int], store_history: bool, then: str | None
    ) -> bool | None:
        """One execute request per cell, the next one sent when the previous one replied;
        ``then`` goes with the last one. Returns how ``then`` went (None: not evaluated)."""
        client, session = self.client, self.client.session
        iopub, shell = client.iopub_channel.socket, client.shell_channel.socket
        assert iopub is not None and shell is not None
        notebook_cells = run.notebook["cells"]
        for index in cells:
            cell = notebook_cells[index]
            run.current_cell = index
            msg_id = client.execute(
                cell_source(cell),
                store_history=store_history,
                allow_stdin=False,
                user_expressions=_expressions(then) if index == cells[-1] else None,
            )
            sink = _CellOutputs(run, cell)
            while True:  # IOPub up to the idle status, which follows every output of the cell
                kind, parent, content = await receive(iopub, session)
                if parent != msg_id:
                    continue
                if kind == "status":
                    if content.get("execution_state") == "idle":
                        break
                    continue
                sink.take(kind, content)
            while True:
                _, parent, content = await receive(shell, session)
                if parent == msg_id:
                    break
            if store_history:
                cell["execution_count"] = content.get("execution_count")
            status = content.get("status")
            if status == "error":
                run.fail_exception(index, content)
                return None
            if status == "aborted":
                run.fail("exception", "the kernel aborted the cell", index)
                return None
        run.current_cell = None
        return _evaluated(content, then)

    async def _run_together(self, run: Run, cells: list[int], then: str | None) -> bool | None:
        """All ``cells`` in one execute request; markers between cells split the outputs.

        The injected parameters cell, when it comes first, gets no marker unless it fails: it
        only assigns (no outputs), and a marker costs a round trip to the kernel's IOPub
        thread. Outputs meanwhile go to the next cell, and back to it if it failed.
        """
        client, session = self.client, self.client.session
        iopub, shell = client.iopub_channel.socket, client.shell_channel.socket
        assert iopub is not None and shell is not None
        notebook_cells = run.notebook["cells"]
        sources = [cell_source(notebook_cells[index]) for index in cells]
        quiet_first = cells[0] == run.parameters_cell
        code = (
            f"__import__({INCELL_MODULE!r}, fromlist=['_'])"
            f".run_cells({sources!r}, quiet_first={quiet_first})"
        )
        msg_id = client.execute(
            code, store_history=False, allow_stdin=False, user_expressions=_expressions(then)
        )
        position = 1 if quiet_first else 0
        run.current_cell = cells[position]
        sink = _CellOutputs(run, notebook_cells[cells[position]])
        failed: int | None = None
        while True:
            kind, parent, content = await receive(iopub, session)
            if parent != msg_id:
                continue
            if kind == "status":
                if content.get("execution_state") == "idle":
                    break
                continue
            if kind == "display_data" and CELL_END in content.get("data", {}):
                marker = content["data"][CELL_END]
                number = int(marker.get("cell", position))
                if not marker.get("ok"):
                    failed = cells[number]
                    if number != position:  # the quiet first cell: its outputs are its own
                        notebook_cells[failed]["outputs"] = list(sink.outputs)
                        sink.outputs.clear()
                        run.current_cell = failed
                elif number + 1 < len(cells):
                    position = number + 1
                    run.current_cell = cells[position]
                    sink = _CellOutputs(run, notebook_cells[cells[position]])
                continue
            sink.take(kind, content)
        while True:
            _, parent, content = await receive(shell, session)
            if parent == msg_id:
                break
        if content.get("status") != "ok":  # the driver itself raised (an interrupt between cells)
            run.fail_exception(run.current_cell or cells[position], content)
            return None
        if failed is not None:
            error = sink.last_error or {"ename": "Error", "evalue": "the cell failed"}
            run.fail_exception(failed, error)
        else:
            run.current_cell = None
        return _evaluated(content, then)

    async def run_quietly(self, code: str, stopper: Stopper) -> bool:
        """Run ``code`` as a silent request (no outputs, no history, no execution count): the
        engine's own housekeeping. True when it ran without error; False when it raised, the
        kernel died, or ``stopper`` fired first (the kernel is then in an unknown state)."""
        if not self.alive or stopper.reason is not None:
            return False
        client = self.client
        shell = client.shell_channel.socket
        assert shell is not None
        msg_id = client.execute(code, silent=True, store_history=False, allow_stdin=False)

        async def reply() -> dict[str, Any]:
            while True:  # IOPub's busy and idle for it are skipped by the next run's filter
                _, parent, content = await receive(shell, client.session)
                if parent == msg_id:
                    return content

        work = asyncio.ensure_future(reply())
        try:
            await asyncio.wait(
                (work, stopper.future, self.process.exited), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not work.done():
                work.cancel()
                await asyncio.wait((work,))
        if work.cancelled() or work.exception() is not None:
            return False
        return work.result().get("status") == "ok"

    async def dispose(self) -> None:
        """Close the client's sockets and kill the kernel."""
        if self._disposed:
            return
        self._disposed = True
        for channel in (self.client.shell_channel, self.client.iopub_channel):
            channel.close()
        await self.process.kill()


async def receive(
    socket: zmq.asyncio.Socket, session: Session
) -> tuple[str, str | None, dict[str, Any]]:
    """The next message on ``socket`` as (type, parent message id, content).

    ``Session.deserialize`` would also parse every date of the headers and the metadata, and
    ``get_msg`` polls before receiving: together about half of our CPU per message. Messages
    with a bad signature are dropped, as jupyter_client would refuse them.
    """
    while True:
        frames: list[bytes] = await socket.recv_multipart()
        try:
            parts = frames[frames.index(DELIM) + 1 :]
            if session.auth is not None and not compare_digest(parts[0], session.sign(parts[1:5])):
                raise ValueError("invalid signature")
            header = session.unpack(parts[1])
            parent = session.unpack(parts[2])
            content = session.unpack(parts[4])
        except (ValueError, IndexError) as exc:
            log.warning("dropped a kernel message: %s", exc)
            continue
        return header["msg_type"], parent.get("msg_id"), content


def _expressions(then: str | None) -> dict[str, str] | None:
    return {"then": then} if then is not None else None


def _evaluated(reply: dict[str, Any], then: str | None) -> bool | None:
    """Whether the ``then`` expression sent with a request evaluated without error; None when
    there was none or the request failed first (the kernel then evaluates no expression)."""
    if then is None or reply.get("status") != "ok":
        return None
    return bool((reply.get("user_expressions") or {}).get("then", {}).get("status") == "ok")


class _CellOutputs:
    """Turns the IOPub messages answering one cell into that cell's outputs."""

    __slots__ = ("clear_pending", "last_error", "outputs", "run")

    def __init__(self, run: Run, cell: dict[str, Any]) -> None:
        self.run = run
        self.outputs: list[dict[str, Any]] = cell.setdefault("outputs", [])
        self.clear_pending = False
        self.last_error: dict[str, Any] | None = None

    def take(self, kind: str, content: dict[str, Any]) -> None:
        if kind == "clear_output":
            if content.get("wait"):
                self.clear_pending = True
            else:
                self.outputs.clear()
            return
        if kind == "update_display_data":
            _update_display(self.run, content)
            return
        output = _output(kind, content)
        if output is None:
            return
        if kind == "error":
            self.last_error = content
        if self.clear_pending:
            self.outputs.clear()
            self.clear_pending = False
        _add_output(self.run, self.outputs, output, content)


def _output(kind: str, content: dict[str, Any]) -> dict[str, Any] | None:
    """The nbformat output for an IOPub message, or None for messages that are not outputs."""
    if kind == "stream":
        return {"output_type": "stream", "name": content["name"], "text": content["text"]}
    if kind == "display_data":
        return {
            "output_type": "display_data",
            "data": content.get("data", {}),
            "metadata": content.get("metadata", {}),
        }
    if kind == "execute_result":
        return {
            "output_type": "execute_result",
            "execution_count": content.get("execution_count"),
            "data": content.get("data", {}),
            "metadata": content.get("metadata", {}),
        }
    if kind == "error":
        return {
            "output_type": "error",
            "ename": content.get("ename", ""),
            "evalue": content.get("evalue", ""),
            "traceback": content.get("traceback", []),
        }
    return None


def _add_output(
    run: Run, outputs: list[dict[str, Any]], output: dict[str, Any], content: dict[str, Any]
) -> None:
    if output["output_type"] == "stream":
        run.logs.append(output["text"])
        last = outputs[-1] if outputs else None
        if last is not None and last["output_type"] == "stream" and last["name"] == output["name"]:
            last["text"] += output["text"]
            return
    elif "data" in output:
        data = output["data"]
        if OUTPUT_MIMETYPE in data:
            run.output, run.has_output = data[OUTPUT_MIMETYPE], True
        display_id = (content.get("transient") or {}).get("display_id")
        if display_id:
            run.displays.setdefault(display_id, []).append(output)
    outputs.append(output)


def _update_display(run: Run, content: dict[str, Any]) -> None:
    display_id = (content.get("transient") or {}).get("display_id")
    for output in run.displays.get(display_id or "", []):
        output["data"] = content.get("data", {})
        output["metadata"] = content.get("metadata", {})


async def wait_ready(
    client: AsyncKernelClient, exited: asyncio.Future[Any], timeout: float
) -> dict[str, Any]:
    """Wait until the kernel answers kernel_info and its IOPub reaches us; return the info.

    IOPub is connected once ipykernel's ``iopub_welcome`` arrives (ipykernel >= 7) or once a
    status message answering one of our kernel_info requests does (any kernel); until then the
    request is repeated. No fixed wait for IOPub to go quiet, unlike ``wait_for_ready``.
    """
    deadline = time.monotonic() + timeout
    asked = {client.kernel_info()}
    info: dict[str, Any] | None = None
    iopub_ok = False
    shell_get = asyncio.ensure_future(client.shell_channel.get_msg())
    iopub_get = asyncio.ensure_future(client.iopub_channel.get_msg())
    try:
        while info is None or not iopub_ok:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KernelStartError(f"the kernel did not answer within {timeout:g} s")
            done, _ = await asyncio.wait(
                (shell_get, iopub_get, exited),
                timeout=min(remaining, 0.25),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if exited.done():
                code = exited.result() if not exited.cancelled() else None
                raise KernelStartError(f"{describe_exit(code)} during start-up")
            if shell_get in done:
                msg = shell_get.result()
                if msg["msg_type"] == "kernel_info_reply":
                    info = msg["content"]
                shell_get = asyncio.ensure_future(client.shell_channel.get_msg())
            if iopub_get in done:
                msg = iopub_get.result()
                parent = msg["parent_header"].get("msg_id")
                if msg["msg_type"] == "iopub_welcome" or parent in asked:
                    iopub_ok = True
                iopub_get = asyncio.ensure_future(client.iopub_channel.get_msg())
            if not done and not iopub_ok:
                asked.add(client.kernel_info())
    finally:
        for pending in (shell_get, iopub_get):
            pending.cancel()
        await asyncio.wait((shell_get, iopub_get))
    return info


class KernelFactory(ABC):
    """Makes ready kernels for kernel names it was chosen for."""

    async def start(self) -> None:  # noqa: B027 (optional hook)
        """Prepare ahead of the first kernel (for example a template process)."""

    async def stop(self) -> None:  # noqa: B027 (optional hook)
        """Release what ``start`` made; kernels are ended by their owners before this."""

    @abstractmethod
    async def start_kernel(self, kernel_name: str) -> Kernel:
        """A ready kernel, or KernelStartError; on cancellation nothing is left running."""


class StockProcess(KernelProcess):
    """A kernel started by jupyter_client's AsyncKernelManager."""

    def __init__(self, manager: AsyncKernelManager) -> None:
        self.manager = manager
        self._poller: asyncio.Task[None] | None = None
        self.exited = asyncio.get_running_loop().create_future()
        popen = getattr(manager.provisioner, "process", None)
        pid = getattr(popen, "pid", None)
        if isinstance(pid, int) and hasattr(os, "pidfd_open"):
            watch_pid(pid).add_done_callback(lambda _: self._ended(popen))
        else:  # another provisioner, or not Linux: ask twice a second
            self._poller = asyncio.ensure_future(self._poll())

    def _ended(self, popen: Any) -> None:
        code = popen.poll() if popen is not None else None
        if not self.exited.done():
            self.exited.set_result(code if isinstance(code, int) else None)

    async def _poll(self) -> None:
        while await self.manager.is_alive():
            await asyncio.sleep(0.5)
        if not self.exited.done():
            self.exited.set_result(None)

    async def interrupt(self) -> None:
        await self.manager.interrupt_kernel()

    async def kill(self) -> None:
        try:
            await self.manager.shutdown_kernel(now=True)
        finally:
            if self._poller is not None:
                self._poller.cancel()
            if not self.exited.done():
                self.exited.set_result(None)


class StockKernelFactory(KernelFactory):
    """Any kernelspec, started by jupyter_client (an interpreter start per kernel)."""

    def __init__(self, context: zmq.asyncio.Context, start_timeout: float = 60.0) -> None:
        self.context = context
        self.start_timeout = start_timeout
        self._directory: str | None = None
        self._ids = itertools.count(1)

    async def stop(self) -> None:
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    async def start_kernel(self, kernel_name: str) -> Kernel:
        manager = AsyncKernelManager(kernel_name=kernel_name, context=self.context)
        try:
            spec = manager.kernel_spec
        except NoSuchKernel as exc:
            raise KernelStartError(f"no kernelspec named {kernel_name!r}") from exc
        assert spec is not None
        extra: list[str] = []
        if ipykernel_argv(spec) is not None:
            # IPC sockets in a private directory: no TCP ports to race for, no plain-text warning
            if self._directory is None:
                self._directory = tempfile.mkdtemp(prefix="nbpk-")
            manager.transport = "ipc"
            manager.ip = os.path.join(self._directory, f"k{next(self._ids)}")
            extra = KERNEL_ARGS
        try:
            await manager.start_kernel(
                extra_arguments=extra, env=without_nbplane_settings(os.environ)
            )
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await manager.cleanup_resources()
            if isinstance(exc, Exception):
                raise KernelStartError(f"could not start: {exc}") from exc
            raise
        process = StockProcess(manager)
        client: AsyncKernelClient = manager.client()
        client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=False)
        runs_nbplane = bool(extra) and same_python(spec.argv[0])
        kernel = Kernel(kernel_name, client, process, {}, runs_nbplane=runs_nbplane)
        try:
            kernel.info = await wait_ready(client, process.exited, self.start_timeout)
        except BaseException:
            await kernel.dispose()
            raise
        return kernel


class KernelProvider:
    """Chooses a factory per kernel name and ends kernels in the background.

    ``forked`` (default) makes ``python3`` kernels, when their kernelspec runs ipykernel with
    nbplane's own interpreter, by forking a template process; every other kernelspec, or all
    of them with ``forked=False``, starts through jupyter_client.
    """

    def __init__(self, *, forked: bool = True, start_timeout: float = 60.0) -> None:
        self.forked = forked
        self.start_timeout = start_timeout
        self.context: zmq.asyncio.Context | None = None
        self._stock: StockKernelFactory | None = None
        self._fork: KernelFactory | None = None
        self._chosen: dict[str, KernelFactory] = {}
        self._specs = KernelSpecManager()
        self._disposals: set[asyncio.Task[None]] = set()
        self._live: set[Kernel] = set()

    async def start(self) -> None:
        if self.context is not None:
            return
        context = zmq.asyncio.Context()
        # Kernels bind a moment after we connect: retry every 5 ms instead of every 100 ms.
        context.setsockopt(zmq.RECONNECT_IVL, 5)
        context.setsockopt(zmq.LINGER, 0)
        self.context = context
        self._stock = StockKernelFactory(context, self.start_timeout)

    def factory_for(self, kernel_name: str) -> KernelFactory:
        """The factory for ``kernel_name``; KernelStartError when no such kernelspec exists."""
        chosen = self._chosen.get(kernel_name)
        if chosen is not None:
            return chosen
        if self.context is None or self._stock is None:
            raise RuntimeError("the kernel provider is not started")
        try:
            spec = self._specs.get_kernel_spec(kernel_name)
        except NoSuchKernel as exc:
            raise KernelStartError(f"no kernelspec named {kernel_name!r}") from exc
        factory: KernelFactory = self._stock
        if self.forked:
            from nbplane.apis.engines.forked import ForkedKernelFactory

            if ForkedKernelFactory.can_fork(spec):
                if self._fork is None:
                    self._fork = ForkedKernelFactory(self.context, self.start_timeout)
                factory = self._fork
        self._chosen[kernel_name] = factory
        return factory

    async def start_kernel(self, kernel_name: str) -> Kernel:
        """A ready kernel of ``kernel_name``; ``stop`` kills it if nobody disposed of it."""
        kernel = await self._start_kernel(kernel_name)
        if self.context is None:  # stopped meanwhile
            await kernel.dispose()
            raise KernelStartError("the engine is stopping")
        self._live.add(kernel)
        return kernel

    async def _start_kernel(self, kernel_name: str) -> Kernel:
        factory = self.factory_for(kernel_name)
        if factory is self._fork and self._stock is not None:
            try:
                return await factory.start_kernel(kernel_name)
            except KernelStartError as exc:
                if getattr(factory, "broken", False):  # the template itself cannot run
                    log.warning("forked kernels unavailable (%s); starting stock kernels", exc)
                    self._chosen = {k: self._stock for k in self._chosen}
                    return await self._stock.start_kernel(kernel_name)
                raise
        return await factory.start_kernel(kernel_name)

    def dispose_soon(self, kernel: Kernel) -> None:
        """Kill ``kernel`` in the background; ``stop`` waits for it."""
        task = asyncio.ensure_future(self._dispose(kernel))
        self._disposals.add(task)
        task.add_done_callback(self._disposals.discard)

    async def _dispose(self, kernel: Kernel) -> None:
        self._live.discard(kernel)
        try:
            await kernel.dispose()
        except Exception:  # a kernel that will not die must not break the engine
            log.exception("could not end kernel %s", kernel.kernel_name)

    async def stop(self) -> None:
        """Kill every kernel still alive (in use or not) and wait until all are gone."""
        for kernel in list(self._live):
            self.dispose_soon(kernel)
        while self._disposals:
            await asyncio.wait(set(self._disposals))
        if self._fork is not None:
            await self._fork.stop()
            self._fork = None
        if self._stock is not None:
            await self._stock.stop()
        self._chosen.clear()
        if self.context is not None:
            self.context.destroy(linger=0)
            self.context = None


class KernelPool:
    """Kernels started ahead of time, ``size`` per kernel name, each used once.

    Taking a kernel starts its replacement in the background. A failed start is handed to the
    request that takes it (as KernelStartError) rather than retried in a loop, so a broken
    kernelspec costs one start per request, not a busy machine.
    """

    def __init__(self, provider: KernelProvider, size: int = 4) -> None:
        if size < 1:
            raise ValueError("the pool needs at least one kernel per kernel name")
        self.provider = provider
        self.size = size
        self._ready: dict[str, asyncio.Queue[Kernel | KernelStartError]] = {}
        self._starting: set[asyncio.Task[None]] = set()
        self._closed = False

    def prepare(self, kernel_name: str) -> None:
        """Start filling the pool for ``kernel_name`` (KernelStartError if it does not exist)."""
        if kernel_name in self._ready:
            return
        self.provider.factory_for(kernel_name)
        self._ready[kernel_name] = asyncio.Queue()
        for _ in range(self.size):
            self._start_one(kernel_name)

    async def wait_full(self, kernel_name: str) -> None:
        """Wait until the pool of ``kernel_name`` holds ``size`` kernels (or failures)."""
        self.prepare(kernel_name)
        queue = self._ready[kernel_name]
        while queue.qsize() < self.size and self._starting:
            await asyncio.wait(set(self._starting), return_when=asyncio.FIRST_COMPLETED)

    def _start_one(self, kernel_name: str) -> None:
        task = asyncio.ensure_future(self._fill(kernel_name))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _fill(self, kernel_name: str) -> None:
        try:
            item: Kernel | KernelStartError = await self.provider.start_kernel(kernel_name)
        except KernelStartError as exc:
            item = exc
        except Exception as exc:  # a bug or an OS error: the request that takes it reports it
            log.exception("starting a %s kernel failed", kernel_name)
            item = KernelStartError(repr(exc))
        if self._closed:
            if isinstance(item, Kernel):
                await item.dispose()
            return
        self._ready[kernel_name].put_nowait(item)

    async def acquire(self, kernel_name: str) -> Kernel:
        """A fresh ready kernel, now if one is waiting; KernelStartError if its start failed."""
        if self._closed:
            raise RuntimeError("the kernel pool is stopped")
        self.prepare(kernel_name)
        queue = self._ready[kernel_name]
        while True:
            item = await queue.get()
            self._start_one(kernel_name)
            if isinstance(item, KernelStartError):
                raise item
            if item.alive:
                return item
            self.provider.dispose_soon(item)  # died while waiting: take the next one

    async def stop(self) -> None:
        self._closed = True
        for task in list(self._starting):
            task.cancel()
        if self._starting:
            await asyncio.wait(set(self._starting))
        for queue in self._ready.values():
            while not queue.empty():
                item = queue.get_nowait()
                if isinstance(item, Kernel):
                    self.provider.dispose_soon(item)
        self._ready.clear()


def same_python(executable: str) -> bool:
    """Is ``executable`` (from a kernelspec's argv) nbplane's own interpreter?"""
    major, minor = sys.version_info[:2]
    if executable in ("python", f"python{major}", f"python{major}.{minor}"):
        return True  # jupyter_client replaces these names with sys.executable
    return os.path.realpath(executable) == os.path.realpath(sys.executable)
