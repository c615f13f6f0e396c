"""Workers take queued executions from the shared database and run them on an engine.

A worker runs inside ``nbplane serve`` and, for scale, as ``nbplane worker`` processes on any
host reaching the same database. Each running execution beats every few seconds; an execution
whose worker stopped beating is retried when its contract allows retries, else it ends as
"worker lost". Limits (``concurrency`` and a contract's ``max_concurrency``) are per worker.
Every status change goes through :class:`~nbplane.apis.lifecycle.ExecutionLifecycle`.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from datetime import timedelta

from nbplane._time import now, sleep_or_wake
from nbplane.apis.catalog import ApiCatalog
from nbplane.apis.engines.base import Engine, ExecutionRequest
from nbplane.apis.lifecycle import WORKER_STOPPED, Ending, ExecutionLifecycle
from nbplane.apis.models import DescribeExecution, ExecutionStatus
from nbplane.apis.validation import validate_output
from nbplane.errors import NbplaneError
from nbplane.platform.metrics import UNOBSERVED, Metrics
from nbplane.plugins import ExtensionPoint
from nbplane.settings import get_settings
from nbplane.store import Store

ENGINES = ExtensionPoint[Engine]("nbplane.engines", Engine, "engine", "engine")


class EngineSet:
    """The engines a worker runs executions on, each made and started on first use."""

    def __init__(self, pool_size: int = 4) -> None:
        self.pool_size = pool_size
        self._engines: dict[str, Engine] = {}
        self._lock = asyncio.Lock()

    async def get(self, name: str) -> Engine:
        async with self._lock:
            if name not in self._engines:
                engine = ENGINES.load(name).for_worker(self.pool_size)
                await engine.start()
                self._engines[name] = engine
            return self._engines[name]

    async def stop(self) -> None:
        for engine in self._engines.values():
            await engine.stop()
        self._engines.clear()


class Worker:
    def __init__(
        self,
        store: Store,
        catalog: ApiCatalog,
        *,
        concurrency: int = 4,
        pool_size: int = 4,
        poll_interval: float = 0.5,
        heartbeat_interval: float | None = None,
        stale_after: float | None = None,
        metrics: Metrics = UNOBSERVED,
    ) -> None:
        settings = get_settings()
        self.catalog = catalog
        self.lifecycle = ExecutionLifecycle(store, metrics)
        self.concurrency = concurrency
        self.engines = EngineSet(pool_size)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval or settings.worker_heartbeat_seconds
        self.stale_after = timedelta(seconds=stale_after or settings.worker_stale_seconds)
        self._wake = asyncio.Event()
        self._running: dict[str, tuple[str, asyncio.Task[None], asyncio.Event]] = {}
        self._finished: dict[str, asyncio.Event] = {}
        self._results: dict[str, DescribeExecution] = {}
        self._queue_drained = False
        self._reserved = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.last_beat = time.monotonic()
        """When the claim loop last went round (readiness: the worker is alive)."""

    async def start(self) -> None:
        await self.engines.get("isolated")  # warm the kernel pool before the first request
        self._tasks = [
            asyncio.create_task(self._claim_loop()),
            asyncio.create_task(self._reap_loop()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        running = [task for _, task, _ in self._running.values()]
        for task in running:
            task.cancel()
        await asyncio.gather(*self._tasks, *running, return_exceptions=True)
        await self.engines.stop()

    def wake(self) -> None:
        """A new execution was queued: look for work now instead of at the next poll."""
        self._wake.set()

    def cancel(self, execution_id: str) -> bool:
        """Cancel a running execution of this worker at once (the row says so too)."""
        running = self._running.get(execution_id)
        if running is None:
            return False
        running[2].set()
        return True

    async def run_now(self, record: DescribeExecution) -> DescribeExecution | None:
        """Store a new execution as already ours and run it at once, skipping the trip through
        the queue, when this worker has room and found the queue empty on its last look (so
        nothing older waits). Returns the stored record, or None to queue it as usual."""
        if not self._queue_drained or self._busy() >= self.concurrency:
            return None
        eligible = self._eligible()
        if eligible is not None and record.notebook not in eligible:
            return None
        self._reserved += 1
        try:
            taken = await asyncio.to_thread(self.lifecycle.take_now, record, self.worker_id, now())
        finally:
            self._reserved -= 1
        self.finished_event(taken.id)  # keeps its final record for a waiter
        self._start(taken)
        return taken

    def _busy(self) -> int:
        return len(self._running) + self._reserved

    def result(self, execution_id: str) -> DescribeExecution | None:
        """The final record of an execution this worker just finished, without a query."""
        return self._results.get(execution_id)

    def finished_event(self, execution_id: str) -> asyncio.Event:
        """Set when this worker gives the execution a final status."""
        return self._finished.setdefault(execution_id, asyncio.Event())

    def forget(self, execution_id: str) -> None:
        self._finished.pop(execution_id, None)
        self._results.pop(execution_id, None)

    def _start(self, record: DescribeExecution) -> None:
        cancel = asyncio.Event()
        task = asyncio.create_task(self._execute(record, cancel))
        self._running[record.id] = (record.notebook, task, cancel)

    async def _claim_loop(self) -> None:
        while True:
            self.last_beat = time.monotonic()
            while self._busy() < self.concurrency:
                record = await asyncio.to_thread(
                    self.lifecycle.claim, self.worker_id, now(), self._eligible()
                )
                self._queue_drained = record is None
                if record is None:
                    break
                self._start(record)
            self._wake.clear()
            await sleep_or_wake(self._wake, self.poll_interval)

    def _eligible(self) -> list[str] | None:
        """Notebooks this worker may take more of, given their contracts' max_concurrency."""
        apis = self.catalog.all()
        limits = {
            api.name: api.contract.max_concurrency
            for api in apis
            if api.contract is not None and api.contract.max_concurrency is not None
        }
        if not limits:
            return None
        counts: dict[str, int] = {}
        for notebook, _, _ in self._running.values():
            counts[notebook] = counts.get(notebook, 0) + 1
        return [api.name for api in apis if counts.get(api.name, 0) < limits.get(api.name, 1 << 30)]

    async def _reap_loop(self) -> None:
        while True:
            retried = await asyncio.to_thread(self.lifecycle.recover_lost, now(), self.stale_after)
            if retried:
                self.wake()
            await asyncio.sleep(self.stale_after.total_seconds() / 3)

    async def _heartbeat(self, execution_id: str, cancel: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            asked = await asyncio.to_thread(
                self.lifecycle.beat, execution_id, self.worker_id, now()
            )
            if asked:
                cancel.set()

    async def _execute(self, record: DescribeExecution, cancel: asyncio.Event) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(record.id, cancel))
        ending = WORKER_STOPPED
        try:
            ending = await self._run(record, cancel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ending = Ending.of_error(exc)
        finally:
            heartbeat.cancel()
            final = await asyncio.shield(
                asyncio.to_thread(self.lifecycle.end, record, self.worker_id, ending, now())
            )
            self._running.pop(record.id, None)
            if final is not None and record.id in self._finished:
                self._results[record.id] = final
            self.finished_event(record.id).set()
            self.wake()

    async def _run(self, record: DescribeExecution, cancel: asyncio.Event) -> Ending:
        api = self.catalog.usable(record.notebook, None)
        assert api.contract is not None
        injected = api.parameters_cell(record.parameters)
        engine = await self.engines.get(record.engine)
        outcome = await engine.execute(
            ExecutionRequest(
                key=f"{api.name}@{api.version}",
                notebook=api.notebook,
                parameters_source=injected.source,
                parameters_display=injected.display,
                inject_after=injected.after,
                kernel_name=api.contract.kernel,
                timeout=record.timeout,
            ),
            cancel,
        )
        ending = Ending.of_outcome(outcome)
        if ending.status == ExecutionStatus.COMPLETED:
            try:
                validate_output(api, outcome.output if outcome.has_output else None)
            except NbplaneError as exc:
                return ending.output_refused(exc)
        return ending
