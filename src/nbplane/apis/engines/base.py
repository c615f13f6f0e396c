"""What every engine shares: the request and outcome types, and the lifecycle of an execution.

An engine runs one notebook execution on an IPython shell or in a Jupyter kernel: it injects the
parameters cell after ``inject_after``, runs the code cells, and reports what happened as an
:class:`ExecutionOutcome`. :meth:`Engine.execute` owns the lifecycle (timing, the
whole-execution timeout, cancellation, and turning a kernel or shell that cannot start into a
failed outcome); a subclass writes ``_execute``, which gets a shell or kernel and runs cells in
it (see :mod:`nbplane.apis.engines.shell`, :mod:`nbplane.apis.engines.isolated` and
:mod:`nbplane.apis.engines.reuse`).

The user's problems (an exception in a cell, a kernel that dies, a timeout, a cancel) are
outcomes, never exceptions: only a bug of ours, or a call on an engine that is not started,
raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

# ``nbplane.save_output(obj)`` displays ``{OUTPUT_MIMETYPE: obj}``; the last one is the output.
from nbplane.apis.output import OUTPUT_MIMETYPE as OUTPUT_MIMETYPE

PARAMETERS_TAG = "injected-parameters"
"""Tag of the cell an engine adds to bind the parameters (papermill's name for it). The kernel
runs the request's ``parameters_source`` in it; the executed notebook shows its
``parameters_display`` (swapped in by :meth:`Run.outcome`, once for every engine)."""

PHASES = ("engine_start", "cells", "capture")
"""What an engine's time goes to: ``engine_start`` getting a kernel or shell ready for this
request (waiting for the pool, forking, warming), ``cells`` running the code cells, ``capture``
turning what they produced into the executed notebook and the output. Engines add to
``Run.timings`` with :meth:`Run.timed`; what they do not account for shows as ``other``."""

log = logging.getLogger(__name__)
T = TypeVar("T")
StopReason = Literal["timeout", "cancelled"]


@dataclass
class ExecutionRequest:
    """One execution of a notebook: what to run, with which parameters, in which kernel."""

    key: str
    """Identifies notebook and version; the reuse engine keeps one warm kernel per key."""
    notebook: dict[str, Any]
    """nbformat-4 JSON as the user wrote it; never modified by the engine."""
    parameters_source: str
    """Python code binding the parameters, already safe: it runs as its own cell."""
    parameters_display: str
    """What the executed notebook shows as that cell (the values, papermill's way); never run."""
    inject_after: int
    """Index of the cell after which the parameters cell goes (-1: before the first cell)."""
    kernel_name: str = "python3"
    timeout: float = 60.0
    """Seconds for the whole execution, including waiting for a kernel."""


@dataclass
class ExecutionOutcome:
    """What happened; ``notebook`` is the executed notebook with its outputs."""

    status: str
    """``completed``, ``failed``, ``timed_out`` or ``cancelled``."""
    notebook: dict[str, Any]
    output: Any = None
    has_output: bool = False
    error: dict[str, Any] | None = None
    """``reason`` (exception, kernel_died, timeout, cancelled, kernel_failed_to_start), ``message``,
    ``cell`` (index in the executed notebook, or None; messages count from 1, as JupyterLab
    shows cells) and, for exceptions, ename, evalue and traceback."""
    logs: str = ""
    """stdout and stderr of the executed cells, in order."""
    duration: float = 0.0
    """Seconds from the call of ``execute`` to its return."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent in each phase of ``duration``, in order (see :data:`PHASES`)."""


class Stopped(Exception):
    """The execution's time ran out or it was cancelled while waiting for a kernel."""

    def __init__(self, reason: StopReason) -> None:
        super().__init__(reason)
        self.reason: StopReason = reason


class Stopper:
    """Resolves ``future`` when the execution's deadline passes or its cancel event is set.

    One future for both, so that waiting code races a single thing against its work.
    """

    def __init__(self, timeout: float, cancel: asyncio.Event | None) -> None:
        loop = asyncio.get_running_loop()
        self.future: asyncio.Future[StopReason] = loop.create_future()
        self._timer = loop.call_later(max(timeout, 0.0), self._fire, "timeout")
        self._watcher: asyncio.Task[None] | None = None
        if cancel is not None:
            if cancel.is_set():
                self._fire("cancelled")
            else:
                self._watcher = loop.create_task(self._watch(cancel))

    def _fire(self, reason: StopReason) -> None:
        if not self.future.done():
            self.future.set_result(reason)

    async def _watch(self, cancel: asyncio.Event) -> None:
        await cancel.wait()
        self._fire("cancelled")

    @property
    def reason(self) -> StopReason | None:
        return self.future.result() if self.future.done() else None

    async def guard(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` unless the execution stops first (then cancel it, raise Stopped).

        A result that arrived anyway is returned, so that nothing it holds (a kernel) leaks;
        the caller notices the stop at its next step.
        """
        task = asyncio.ensure_future(awaitable)
        try:
            await asyncio.wait((task, self.future), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait((task,))
        if task.cancelled():
            if not self.future.done():  # cancelled from elsewhere (an engine stopping)
                raise asyncio.CancelledError()
            raise Stopped(self.future.result())
        return task.result()

    def close(self) -> None:
        self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()


def cell_source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


@dataclass
class Run:
    """One execution in progress: the notebook being filled in and what the kernel reported.

    Kernels write into it as messages arrive, so a timeout or a dying kernel keeps what was
    already produced.
    """

    request: ExecutionRequest
    notebook: dict[str, Any]
    parameters_cell: int
    """Index of the injected parameters cell in ``notebook``."""
    status: str = "completed"
    error: dict[str, Any] | None = None
    output: Any = None
    has_output: bool = False
    logs: list[str] = field(default_factory=list)
    current_cell: int | None = None
    """The cell a kernel is running now, for errors that are not the cell's own."""
    displays: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Outputs by display id, for ``update_display_data``."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds by phase (:data:`PHASES`), added to by :meth:`timed`."""

    def timed(self, phase: str, since: float) -> float:
        """Add the time from ``since`` (a ``perf_counter``) to now to ``phase``; return now."""
        moment = time.perf_counter()
        self.timings[phase] = self.timings.get(phase, 0.0) + moment - since
        return moment

    @classmethod
    def prepare(cls, request: ExecutionRequest) -> Run:
        """Copy the notebook without outputs and insert the parameters cell."""
        cells = request.notebook.get("cells")
        if not isinstance(cells, list):
            raise ValueError("the notebook has no 'cells' list")
        if not -1 <= request.inject_after < len(cells):
            raise ValueError(
                f"inject_after={request.inject_after} is outside the notebook's {len(cells)} cells"
            )
        copied: list[dict[str, Any]] = []
        for cell in cells:
            if cell.get("cell_type") == "code":
                copied.append({**cell, "outputs": [], "execution_count": None})
            else:
                copied.append(dict(cell))
        parameters: dict[str, Any] = {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {"tags": [PARAMETERS_TAG]},
            "outputs": [],
            "source": request.parameters_source,
        }
        if any("id" in cell for cell in cells):
            ids = {cell.get("id") for cell in cells}
            new_id, number = PARAMETERS_TAG, 1
            while new_id in ids:
                number += 1
                new_id = f"{PARAMETERS_TAG}-{number}"
            parameters["id"] = new_id
        position = request.inject_after + 1
        copied.insert(position, parameters)
        notebook = {
            **request.notebook,
            "cells": copied,
            "metadata": dict(request.notebook.get("metadata") or {}),
        }
        return cls(request=request, notebook=notebook, parameters_cell=position)

    def code_cells(self, start: int = 0, stop: int | None = None) -> list[int]:
        """Indices of the cells to run between ``start`` and ``stop``: non-empty code cells
        not tagged ``skip-execution``."""
        cells = self.notebook["cells"]
        return [
            index
            for index in range(start, len(cells) if stop is None else stop)
            if cells[index].get("cell_type") == "code"
            and cell_source(cells[index]).strip()
            and "skip-execution" not in (cells[index].get("metadata") or {}).get("tags", ())
        ]

    @property
    def failed(self) -> bool:
        return self.status != "completed"

    def fail(self, reason: str, message: str, cell: int | None = None, **extra: Any) -> None:
        """Record the first failure; a later one (a kill after a timeout) does not replace it."""
        if self.error is not None and self.error.get("reason") != "exception":
            return
        status = {"timeout": "timed_out", "cancelled": "cancelled"}.get(reason, "failed")
        kept: dict[str, Any] = {}
        if self.error is not None:  # e.g. the KeyboardInterrupt that an interrupt caused
            kept = {k: self.error[k] for k in ("ename", "evalue", "traceback") if k in self.error}
        self.status = status
        self.error = {"reason": reason, "message": message, "cell": cell, **kept, **extra}

    def fail_exception(self, cell: int, content: dict[str, Any]) -> None:
        ename, evalue = str(content.get("ename", "")), str(content.get("evalue", ""))
        self.status = "failed"
        self.error = {
            "reason": "exception",
            "message": f"{ename}: {evalue}" if evalue else ename,
            "cell": cell,
            "ename": ename,
            "evalue": evalue,
            "traceback": list(content.get("traceback") or []),
        }

    def stopped(self, reason: StopReason, cell: int | None) -> None:
        if reason == "timeout":
            where = f" (cell {cell + 1} was running)" if cell is not None else ""
            message = f"the execution did not finish within {self.request.timeout:g} s{where}"
        else:
            message = "the execution was cancelled"
        self.fail(reason, message, cell)

    def outcome(self, began: float) -> ExecutionOutcome:
        """What happened since ``began`` (a ``perf_counter``), the parameters cell showing the
        values rather than the code that bound them. Putting it together is the ``capture``
        phase; the time no phase accounts for shows as ``other``."""
        assembling = time.perf_counter()
        cells = list(self.notebook["cells"])
        cells[self.parameters_cell] = {
            **cells[self.parameters_cell],
            "source": self.request.parameters_display,
        }
        notebook, logs = {**self.notebook, "cells": cells}, "".join(self.logs)
        duration = self.timed("capture", assembling) - began
        return ExecutionOutcome(
            status=self.status,
            notebook=notebook,
            output=self.output,
            has_output=self.has_output,
            error=self.error,
            logs=logs,
            duration=duration,
            timings={**self.timings, "other": max(duration - sum(self.timings.values()), 0.0)},
        )


class Disposable(Protocol):
    """A kernel or a shell: something an engine ends."""

    async def dispose(self) -> None: ...


D = TypeVar("D", bound=Disposable)


class Reaper(Generic[D]):
    """Ends kernels or shells in the background; :meth:`stop` ends those still alive and waits
    until all are gone."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.live: set[D] = set()
        self._disposals: set[asyncio.Task[None]] = set()

    def dispose_soon(self, thing: D) -> None:
        self.live.discard(thing)
        task = asyncio.ensure_future(self._dispose(thing))
        self._disposals.add(task)
        task.add_done_callback(self._disposals.discard)

    async def _dispose(self, thing: D) -> None:
        try:
            await thing.dispose()
        except Exception:  # one that will not die must not break the engine
            log.exception("could not end a %s", self.what)

    async def stop(self) -> None:
        for thing in list(self.live):
            self.dispose_soon(thing)
        while self._disposals:
            await asyncio.wait(set(self._disposals))


class KernelStartError(Exception):
    """A kernel could not be started: unknown kernelspec, crash or silence during start-up."""


class Engine(ABC):
    """Runs executions in kernels. ``start`` before use, ``stop`` to end every kernel."""

    name = "engine"

    def __init__(self) -> None:
        self._state: Literal["new", "started", "stopped"] = "new"

    @classmethod
    def for_worker(cls, pool_size: int) -> Engine:
        """How a worker makes this engine (the one construction every engine offers):
        ``pool_size`` is the worker's ``--pool-size``, kernels kept ready where that applies."""
        return cls()

    @property
    def started(self) -> bool:
        return self._state == "started"

    async def start(self) -> None:
        """Prepare kernels ahead of the first request; calling it again does nothing."""
        if self._state == "started":
            return
        if self._state == "stopped":
            raise RuntimeError(f"the {self.name} engine was stopped; make a new one")
        await self._start()
        self._state = "started"

    async def stop(self) -> None:
        """End every kernel of this engine, waiting until their processes are gone."""
        if self._state == "stopped":
            return
        self._state = "stopped"
        await self._stop()

    async def execute(
        self, request: ExecutionRequest, cancel: asyncio.Event | None = None
    ) -> ExecutionOutcome:
        """Run ``request``; ``cancel`` being set stops it (status ``cancelled``)."""
        if self._state != "started":
            raise RuntimeError(f"the {self.name} engine is {self._state}, not started")
        began = time.perf_counter()
        run = Run.prepare(request)
        run.notebook["metadata"]["nbplane"] = {"engine": self.name}
        stopper = Stopper(request.timeout, cancel)
        try:
            await self._execute(run, stopper)
        except Stopped as stop:
            run.stopped(stop.reason, run.current_cell)
        except KernelStartError as exc:
            run.fail("kernel_failed_to_start", f"kernel {request.kernel_name!r}: {exc}")
        finally:
            stopper.close()
        return run.outcome(began)

    async def _start(self) -> None:  # noqa: B027 (optional hook)
        """Hook: start kernels or helpers ahead of requests."""

    async def _stop(self) -> None:  # noqa: B027 (optional hook)
        """Hook: end every kernel and helper."""

    @abstractmethod
    async def _execute(self, run: Run, stopper: Stopper) -> None:
        """Hook: get a kernel for ``run.request`` and run its cells, recording into ``run``.

        Raise :class:`Stopped` (``stopper.guard`` does) or :class:`KernelStartError`; record
        everything else that goes wrong for the user into ``run``.
        """
