"""Workers take queued executions from the shared database and run them on an engine.

A worker runs inside ``nbplane serve`` and, for scale, as ``nbplane worker`` processes on any
host reaching the same database. Each running execution beats every few seconds; an execution
whose worker stopped beating is retried when its contract allows retries, else it ends as
"worker lost". Limits (``concurrency`` and a contract's ``max_concurrency``) are per worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from nbplane._time import now
from nbplane.apis.catalog import ApiCatalog
from nbplane.apis.contract import prepare, validate_output
from nbplane.apis.engines.base import Engine, ExecutionOutcome, ExecutionRequest
from nbplane.apis.engines.isolated import IsolatedEngine
from nbplane.apis.engines.reuse import ReuseEngine
from nbplane.apis.models import DescribeExecution, ExecutionStatus
from nbplane.errors import NbplaneError
from nbplane.settings import get_settings
from nbplane.store import Store


class EngineSet:
    """The engines a worker runs executions on, started on first use."""

    def __init__(self, pool_size: int = 4) -> None:
        self._factories: dict[str, Callable[[], Engine]] = {
            "isolated": lambda: IsolatedEngine(pool_size=pool_size),
            "reuse": ReuseEngine,
        }
        self._engines: dict[str, Engine] = {}
        self._lock = asyncio.Lock()

    async def get(self, name: str) -> Engine:
        async with self._lock:
            if name not in self._engines:
                engine = self._factories[name]()
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
    ) -> None:
        settings = get_settings()
        self.store, self.catalog = store, catalog
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
        taken = record.model_copy(
            update={
                "status": ExecutionStatus.RUNNING,
                "worker_id": self.worker_id,
                "started_at": now(),
                "attempts": 1,
            }
        )
        self._reserved += 1
        try:
            await asyncio.to_thread(self.store.executions.create, taken)
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
            while self._busy() < self.concurrency:
                record = await asyncio.to_thread(
                    self.store.executions.claim, self.worker_id, now(), self._eligible()
                )
                self._queue_drained = record is None
                if record is None:
                    break
                self._start(record)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

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
            retried = await asyncio.to_thread(
                self.store.executions.recover_lost, now(), self.stale_after
            )
            if retried:
                self.wake()
            await asyncio.sleep(self.stale_after.total_seconds() / 3)

    async def _heartbeat(self, execution_id: str, cancel: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            asked = await asyncio.to_thread(
                self.store.executions.heartbeat, execution_id, self.worker_id, now()
            )
            if asked:
                cancel.set()

    async def _execute(self, record: DescribeExecution, cancel: asyncio.Event) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(record.id, cancel))
        final: dict[str, Any] = {
            "status": ExecutionStatus.FAILED,
            "reason": "the worker stopped while the execution ran",
            "error": {"reason": "worker_stopped"},
        }
        try:
            final = await self._run(record, cancel)
        except asyncio.CancelledError:
            raise
        except NbplaneError as exc:
            final = {
                "status": ExecutionStatus.FAILED,
                "reason": exc.message,
                "error": exc.to_dict(),
            }
        except Exception as exc:  # never leave an execution running because of our bug
            final = {
                "status": ExecutionStatus.FAILED,
                "reason": f"nbplane failed: {exc!r}",
                "error": {"reason": "internal", "message": repr(exc)},
            }
        finally:
            heartbeat.cancel()
            finished_at = now()
            stored = await asyncio.shield(
                asyncio.to_thread(
                    self.store.executions.finish,
                    record.id,
                    self.worker_id,
                    now=finished_at,
                    **final,
                )
            )
            self._running.pop(record.id, None)
            if stored and record.id in self._finished:
                fields = {key: value for key, value in final.items() if key != "artifacts"}
                self._results[record.id] = record.model_copy(
                    update={**fields, "finished_at": finished_at}
                )
            self.finished_event(record.id).set()
            self.wake()

    async def _run(self, record: DescribeExecution, cancel: asyncio.Event) -> dict[str, Any]:
        api = self.catalog.usable(record.notebook, None)
        assert api.contract is not None
        source, inject_after = prepare(api, record.parameters)
        engine = await self.engines.get(record.engine)
        outcome = await engine.execute(
            ExecutionRequest(
                key=f"{api.name}@{api.version}",
                notebook=api.notebook,
                parameters_source=source,
                inject_after=inject_after,
                kernel_name=api.contract.kernel,
                timeout=record.timeout,
            ),
            cancel,
        )
        final = _final_state(outcome)
        if final["status"] == ExecutionStatus.COMPLETED:
            try:
                validate_output(api, outcome.output if outcome.has_output else None)
            except NbplaneError as exc:
                final = {
                    "status": ExecutionStatus.FAILED,
                    "reason": f"output schema: {exc.message}",
                    "error": exc.to_dict(),
                }
        return {
            **final,
            "output": outcome.output,
            "has_output": outcome.has_output,
            "artifacts": {"ipynb": json.dumps(outcome.notebook), "logs": outcome.logs},
        }


REASON_PREFIX = {"kernel_died": "kernel died", "kernel_failed_to_start": "kernel failed to start"}


def _final_state(outcome: ExecutionOutcome) -> dict[str, Any]:
    """The status and the reason in words, from what the engine saw."""
    error = outcome.error or {}
    kind = str(error.get("reason") or "")
    message = error.get("message")
    reason = None
    if outcome.status == "failed":
        if kind == "exception":
            cell = error.get("cell")
            where = f"in cell {cell}" if cell is not None else "in the notebook"
            reason = f"exception {where}: {error.get('ename')}: {error.get('evalue')}"
        else:
            prefix = REASON_PREFIX.get(kind, kind or "failed")
            reason = f"{prefix}: {message}" if message else prefix
    elif outcome.status == "timed_out":
        reason = message or "timed out"
    elif outcome.status == "cancelled":
        reason = "cancelled"
    return {"status": ExecutionStatus(outcome.status), "reason": reason, "error": outcome.error}
