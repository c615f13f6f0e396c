"""A started kernel and how cells run in it.

A :class:`Kernel` is a ready kernel: its client (jupyter_client's ``AsyncKernelClient``) and its
:class:`KernelProcess`. Cells run one at a time: ipykernel aborts queued requests after an error
only if they already arrived, so sending the next cell before the previous one finished could run
it after a failure. The reuse engine may instead send its request cells as one request that runs
them in turn (:mod:`nbplane.apis.engines._incell`). A kernel's death is noticed from its process
(a pidfd, or the fork server's report), not from heartbeats, so a dead kernel ends its execution
within milliseconds.

Why not nbclient's ``NotebookClient``: it needs a ``KernelManager`` to interrupt a kernel and to
learn of its death (by polling), and forked kernels have none; it sends one request per cell, so
the in-cell fast path and the reuse engine's housekeeping sent as a user expression of the last
request would have no place; and it reads every message through ``Session.deserialize``, about
half our CPU per message (see :func:`receive`). Running only the stock-kernel path on it would
give the same engine contract two implementations of outputs, timeouts and cancel; so every path
runs here, on jupyter_client directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable
from hmac import compare_digest
from typing import Any

import zmq.asyncio
from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.session import DELIM, Session

from nbplane.apis.engines._incell import CELL_END
from nbplane.apis.engines.base import Run, Stopper, cell_source
from nbplane.apis.engines.outputs import CellOutputs

log = logging.getLogger(__name__)


INCELL_MODULE = "nbplane.apis.engines._incell"

INTERRUPT_GRACE = 0.5
"""Seconds an interrupted cell gets to report its KeyboardInterrupt before the kernel is killed."""

DEATH_GRACE = 0.1
"""Seconds to take in the messages a dead kernel sent just before it died."""

EXIT_GRACE = 1.0
"""Seconds to wait for the exit code of a process whose end of the channel closed."""


def describe_exit(code: int | None, what: str = "the kernel") -> str:
    if code is None:
        return f"{what} exited"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"{what} was killed by {name}"
    return f"{what} exited with code {code}"


async def supervise(
    run: Run,
    work: asyncio.Future[Any],
    stopper: Stopper,
    process: KernelProcess,
    what: str,
    disposed: Callable[[], bool],
    hang_ups: tuple[type[BaseException], ...] = (),
) -> bool:
    """Wait for ``work`` (reading the answers of the kernel or shell ``what``), for the end of
    the execution's time or its cancel, or for the process's end, whichever comes first.

    True when ``work`` finished (its result is the caller's); else what happened is recorded
    in ``run``: a stop (after interrupting the cell, whose KeyboardInterrupt is kept if it
    arrives in time) or a death naming the signal or exit code, and the process must be ended.
    ``hang_ups``: exceptions of ``work`` that mean the process closed its end, whose exit is
    then awaited; any other exception of ``work`` while the process lives is a bug of ours.
    """
    exited = process.exited
    try:
        await asyncio.wait((work, stopper.future, exited), return_when=asyncio.FIRST_COMPLETED)
        cell = run.current_cell
        if work.done() and not work.cancelled():
            problem = work.exception()
            if problem is None:
                return True
            if isinstance(problem, hang_ups):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(exited), EXIT_GRACE)
            elif not disposed() and not exited.done():
                raise problem
        elif stopper.future.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(process.interrupt(), INTERRUPT_GRACE)
            await asyncio.wait((work, exited), timeout=INTERRUPT_GRACE)
            run.stopped(stopper.future.result(), cell)
            return False
        await asyncio.wait((work,), timeout=DEATH_GRACE)
        if disposed() and not exited.done():
            run.fail("kernel_died", f"{what} was shut down: the engine is stopping", cell)
            return False
        code = exited.result() if exited.done() else None
        where = f" while cell {cell + 1} ran" if cell is not None else ""
        # alive with its end closed: the notebook's code closed it (the process is killed)
        message = describe_exit(code, what) if exited.done() else f"{what} hung up"
        run.fail("kernel_died", f"{message}{where}", cell, exit_code=code)
        return False
    finally:
        if not work.done():
            work.cancel()
            await asyncio.wait((work,))


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
        if not await supervise(run, work, stopper, self.process, "the kernel", self._is_disposed):
            return False
        evaluated = work.result()
        if then is None:
            return True
        if evaluated is None:  # a cell's request failed before it got there
            return await self.run_quietly(then, stopper)
        return evaluated

    def _is_disposed(self) -> bool:
        return self._disposed

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
            sink = CellOutputs(run, cell)
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
        sink = CellOutputs(run, notebook_cells[cells[position]])
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
                    sink = CellOutputs(run, notebook_cells[cells[position]])
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
