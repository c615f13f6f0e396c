"""Workers take queued executions from the shared database and run them on an engine.

A worker runs inside ``nbplane serve`` and, for scale, as ``nbplane worker`` processes on any
host reaching the same database. It hears of queued executions and cancels through the store's
signals (:mod:`nbplane.store.notify`: in-process at once, from other processes by PostgreSQL's
LISTEN/NOTIFY), and polls only where none reach it (SQLite shared by several processes, a lost
listening connection). Each running execution beats every few seconds; an execution
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
from collections.abc import Callable
from datetime import timedelta
from typing import NamedTuple

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
from nbplane.store.notify import Signal

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
        poll_interval: float | None = None,
        heartbeat_interval: float | None = None,
        stale_after: float | None = None,
        metrics: Metrics = UNOBSERVED,
    ) -> None:
        settings = get_settings()
        self.catalog = catalog
        self.signals = store.signals
        self.lifecycle = ExecutionLifecycle(store, metrics)
        self.concurrency = concurrency
        self.engines = EngineSet(pool_size)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.poll_interval = poll_interval or settings.worker_poll_seconds
        self.heartbeat_interval = heartbeat_interval or settings.worker_heartbeat_seconds
        self.stale_after = timedelta(seconds=stale_after or settings.worker_stale_seconds)
        self._wake = asyncio.Event()
        self._running: dict[str, tuple[str, asyncio.Task[None], asyncio.Event]] = {}
        self._queue_drained = False
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self.last_beat = time.monotonic()
        """When the claim loop last went round (readiness: the worker is alive)."""

    async def start(self) -> None:
        await self.engines.get("isolated")  # warm the kernel pool before the first request
        self._unsubscribe = self.signals.subscribe(self._signalled)
        self._tasks = [
            asyncio.create_task(self._claim_loop()),
            asyncio.create_task(self._reap_loop()),
        ]

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for task in self._tasks:
            task.cancel()
        running = [task for _, task, _ in self._running.values()]
        for task in running:
            task.cancel()
        await asyncio.gather(*self._tasks, *running, return_exceptions=True)
        await self.engines.stop()

    def _signalled(self, signal: Signal) -> None:
        """A signal from this process or another: look for work, or stop an execution."""
        if signal.kind in ("queued", "resync"):
            self._queue_drained = False
            self._wake.set()
        elif signal.kind == "cancel" and signal.execution_id in self._running:
            self._running[signal.execution_id][2].set()

    def runs(self, execution_id: str) -> bool:
        """Whether this worker runs the execution (its end is then signalled in-process)."""
        return execution_id in self._running

    @property
    def busy(self) -> int:
        """How many executions this worker runs now."""
        return len(self._running)

    @property
    def takes_at_once(self) -> bool:
        """Whether a new execution would run at once: there is room, and the queue was empty
        on the last look (nothing older waits)."""
        return self._queue_drained and self.busy < self.concurrency

    def run_now(self, record: DescribeExecution) -> TakenNow | None:
        """Run a new execution at once as already ours, skipping the trip through the queue,
        when this worker :attr:`takes_at_once` (and a contract's limit allows); None to queue
        it as usual. It is stored while its run starts: ``stored`` says
        when it exists (or why it could not be stored: its run is then stopped and its end
        never written)."""
        if not self.takes_at_once:
            return None
        eligible = self._eligible()
        if eligible is not None and record.notebook not in eligible:
            return None
        taken = self.lifecycle.as_taken(record, self.worker_id, now())
        stored = asyncio.ensure_future(asyncio.to_thread(self.lifecycle.take_now, taken))
        self._start(taken, stored)
        return TakenNow(taken, stored)

    def _start(self, record: DescribeExecution, stored: asyncio.Future[None] | None = None) -> None:
        cancel = asyncio.Event()
        if record.cancel_requested:  # asked before its worker was lost; it is queued again
            cancel.set()
        if stored is not None:  # not stored: nobody will see it, stop it

            def stop_unless_stored(done: asyncio.Future[None]) -> None:
                if done.cancelled() or done.exception() is not None:
                    cancel.set()

            stored.add_done_callback(stop_unless_stored)
        task = asyncio.create_task(self._execute(record, cancel, stored))
        self._running[record.id] = (record.notebook, task, cancel)

    async def _claim_loop(self) -> None:
        while True:
            self.last_beat = time.monotonic()
            self._wake.clear()  # before looking: a wake while it looks calls for another look
            await self._claim()
            await sleep_or_wake(self._wake, self._next_look())

    def _next_look(self) -> float:
        """Seconds until the next look for work unless a signal comes first: the poll interval
        where signals from other processes do not arrive, else only the loop's sign of life."""
        if self.signals.listening:
            return self.stale_after.total_seconds() / 3
        return self.poll_interval

    async def _claim(self) -> None:
        """Take queued executions while there is room; several in one write when no contract
        limits its notebook's concurrency."""
        while (room := self.concurrency - self.busy) > 0:
            eligible = self._eligible()
            limit = room if eligible is None else 1
            claimed = await asyncio.to_thread(
                self.lifecycle.claim, self.worker_id, now(), eligible, limit
            )
            for record in claimed.taken:
                self._start(record)
            # a signal while it claimed may be of one queued after its look: not drained then
            self._queue_drained = not claimed.others_wait and not self._wake.is_set()
            if not claimed.others_wait:
                return

    def _limits(self) -> dict[str, int]:
        """The notebooks whose contract limits their executions per worker (max_concurrency)."""
        return {
            api.name: api.contract.max_concurrency
            for api in self.catalog.all()
            if api.contract is not None and api.contract.max_concurrency is not None
        }

    def _eligible(self) -> list[str] | None:
        """Notebooks this worker may take more of, given their contracts' max_concurrency."""
        limits = self._limits()
        if not limits:
            return None
        counts: dict[str, int] = {}
        for notebook, _, _ in self._running.values():
            counts[notebook] = counts.get(notebook, 0) + 1
        return [
            api.name
            for api in self.catalog.all()
            if counts.get(api.name, 0) < limits.get(api.name, 1 << 30)
        ]

    async def _reap_loop(self) -> None:
        while True:  # what it queues again is signalled to every worker
            await asyncio.to_thread(self.lifecycle.recover_lost, now(), self.stale_after)
            await asyncio.sleep(self.stale_after.total_seconds() / 3)

    async def _heartbeat(self, execution_id: str, cancel: asyncio.Event) -> None:
        """Beats from the first interval on: an execution shorter than that never writes one.
        Its answer is also how a cancel reaches it when no signal did."""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            asked = await asyncio.to_thread(
                self.lifecycle.beat, execution_id, self.worker_id, now()
            )
            if asked:
                cancel.set()

    async def _execute(
        self, record: DescribeExecution, cancel: asyncio.Event, stored: asyncio.Future[None] | None
    ) -> None:
        began = time.perf_counter()
        queue = milliseconds((now() - record.created_at).total_seconds())
        spent: dict[str, float] = {}
        heartbeat = asyncio.create_task(self._heartbeat(record.id, cancel))
        ending = WORKER_STOPPED
        try:
            ending = await self._run(record, cancel, spent)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ending = Ending.of_error(exc)
        finally:
            heartbeat.cancel()
            other = round(milliseconds(time.perf_counter() - began) - sum(spent.values()), 3)
            timings = {**record.timings, "queue": queue, **spent, "other": max(other, 0.0)}
            ended = record.model_copy(update={"timings": timings})
            await asyncio.shield(self._record_end(ended, ending, stored))
            self._running.pop(record.id, None)
            if not self._queue_drained or record.notebook in self._limits():
                self._wake.set()  # its place is free for one that waits

    async def _record_end(
        self, ended: DescribeExecution, ending: Ending, stored: asyncio.Future[None] | None
    ) -> None:
        """Write the end, once the execution is stored when it was run at once (never stored:
        nothing to end)."""
        finished = now()
        if stored is not None:
            try:
                await stored
            except Exception:
                return
        await asyncio.to_thread(self.lifecycle.end, ended, self.worker_id, ending, finished)

    async def _run(
        self, record: DescribeExecution, cancel: asyncio.Event, spent: dict[str, float]
    ) -> Ending:
        """Run the execution; ``spent`` gets the engine's phases and ``validate_output``."""
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
        for phase, seconds in outcome.timings.items():
            if phase != "other":  # the worker's own "other" covers it
                spent[phase] = milliseconds(seconds)
        ending = Ending.of_outcome(outcome)
        if ending.status == ExecutionStatus.COMPLETED:
            checking = time.perf_counter()
            try:
                validate_output(api, outcome.output if outcome.has_output else None)
            except NbplaneError as exc:
                return ending.output_refused(exc)
            finally:
                spent["validate_output"] = milliseconds(time.perf_counter() - checking)
        return ending


class TakenNow(NamedTuple):
    """An execution :meth:`Worker.run_now` took: the record, and its insert under way."""

    record: DescribeExecution
    stored: asyncio.Future[None]


def milliseconds(seconds: float) -> float:
    """What ``timings`` holds: milliseconds, to the microsecond."""
    return round(seconds * 1000, 3)
