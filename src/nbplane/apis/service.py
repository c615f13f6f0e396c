"""The one entry to executions for the API: submit, wait, cancel, read artifacts.

Every execution is owned by the user who submitted it: only they and admins see, read or cancel
it, and to anyone else it does not exist (404, never 403). Rows from before owners were
recorded have none, and show to admins alone."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nbplane._time import sleep_or_wake
from nbplane.apis.catalog import ApiCatalog, team_for
from nbplane.apis.lifecycle import ExecutionLifecycle
from nbplane.apis.models import (
    DescribeExecution,
    ExecutionPage,
    ExecutionStatus,
    ListExecutionsQuery,
)
from nbplane.apis.validation import validate_input
from nbplane.apis.worker import Worker, milliseconds
from nbplane.auth.models import DescribeCaller
from nbplane.errors import Conflict, NotFound
from nbplane.notebooks.pages import Failure, notebook_page
from nbplane.notebooks.reader import quiet_missing_cell_ids
from nbplane.settings import get_settings
from nbplane.store import Store
from nbplane.store.notify import Watch


def may_see(caller: DescribeCaller, record: DescribeExecution) -> bool:
    """Its owner and admins; a row without owner (from before owners): admins alone."""
    return caller.admin or (record.created_by is not None and record.created_by == caller.user)


def execution_failure(record: DescribeExecution, cells: list[Any]) -> Failure | None:
    """What failed in an execution and why, for the top of its page; None when it completed.

    ``cells`` are the executed notebook's, which the error's ``cell`` (an index) points into.
    """
    if record.status == ExecutionStatus.COMPLETED or not record.status.final:
        return None
    error = record.error or {}
    cell = error.get("cell")
    where, cell_id = None, None
    if isinstance(cell, int) and 0 <= cell < len(cells):
        where, cell_id = f"cell {cell + 1} of {len(cells)}", cells[cell].get("id")
    if error.get("error") == "InvalidOutput":
        return Failure(
            "Output schema violated",
            error="the output the notebook saved does not match the contract's output schema"
            if record.has_output
            else "no output was saved: call nbplane.save_output(...) in the notebook",
            details=tuple(
                f"{problem.get('pointer') or '(root)'}: {problem.get('message')}"
                for problem in error.get("errors") or []
            ),
        )
    if error.get("reason") == "exception":
        ename, evalue = error.get("ename"), error.get("evalue")
        text = f"{ename}: {evalue}" if evalue else str(ename)
        return Failure("Failed", where, text, cell_id=cell_id)
    title = {ExecutionStatus.TIMED_OUT: "Timed out", ExecutionStatus.CANCELLED: "Cancelled"}
    return Failure(title.get(record.status, "Failed"), where, record.reason, cell_id=cell_id)


FIRST_LOOK = 0.01
"""Seconds before a waiter first reads again an execution whose end no signal will announce;
each next read waits twice as long, up to the poll interval."""


class ExecutionService:
    def __init__(
        self, store: Store, catalog: ApiCatalog, worker: Worker | None, cache_dir: Path
    ) -> None:
        self.store, self.catalog, self.worker = store, catalog, worker
        self.lifecycle = ExecutionLifecycle(store)
        self.cache_dir = cache_dir
        self.poll_interval = get_settings().worker_poll_seconds

    async def submit(
        self, notebook: str, parameters: Any, caller: DescribeCaller, wait: float = 0
    ) -> DescribeExecution:
        """Validate the input against the contract and queue the execution as the caller's
        (or run it at once when this process's worker has room); with ``wait``, answer once it
        is final or ``wait`` seconds have passed."""
        deadline = time.monotonic() + wait
        api = self.catalog.usable(notebook, caller)
        assert api.contract is not None
        checking = time.perf_counter()
        checked = validate_input(api, parameters)
        record = DescribeExecution(
            id=str(uuid.uuid4()),
            notebook=api.name,
            notebook_version=api.version,
            parameters=checked,
            status=ExecutionStatus.QUEUED,
            engine=api.contract.engine,
            timeout=api.contract.timeout,
            retries=api.contract.retries,
            attempts=0,
            created_at=datetime.now(UTC),
            created_by=caller.user,
            team=team_for(api, caller),
            timings={"validate_input": milliseconds(time.perf_counter() - checking)},
        )
        if not wait:
            stored, storing = await self._store(record)
            if storing is not None:
                await storing
            return stored
        with self.store.signals.watch(record.id) as watch:  # before it may end: no end missed
            stored, storing = await self._store(record)
            return await self._until_final(stored, watch, deadline, caller, storing)

    async def _store(
        self, record: DescribeExecution
    ) -> tuple[DescribeExecution, asyncio.Future[None] | None]:
        """Taken by this process's worker at once (and its insert under way, to be awaited
        before the record is shown), else queued (which signals the workers)."""
        if self.worker is not None:
            taken = self.worker.run_now(record)
            if taken is not None:
                return taken
        await asyncio.to_thread(self.lifecycle.queue, record)
        return record, None

    async def wait(
        self, execution_id: str, seconds: float, caller: DescribeCaller
    ) -> DescribeExecution:
        """The caller's execution once final, or as it is when ``seconds`` have passed."""
        deadline = time.monotonic() + seconds
        with self.store.signals.watch(execution_id) as watch:
            record = await asyncio.to_thread(self.get, execution_id, caller)
            return await self._until_final(record, watch, deadline, caller)

    async def _until_final(
        self,
        record: DescribeExecution,
        watch: Watch,
        deadline: float,
        caller: DescribeCaller,
        storing: asyncio.Future[None] | None = None,
    ) -> DescribeExecution:
        """Wait for the signal of the execution's end; read it again only on a signal, or,
        when no signal would come (another process runs it and none reach this one), on a
        backing-off poll. ``storing``: the insert of an execution run at once, awaited before
        it is shown running (its end is written after it; if it fails, its error is raised)."""
        if storing is not None:

            def failed(done: asyncio.Future[None]) -> None:  # ends the wait: raised below
                if done.cancelled() or done.exception() is not None:
                    watch.arrive(None)

            storing.add_done_callback(failed)
        delay = FIRST_LOOK
        while True:
            left = deadline - time.monotonic()
            if record.status.final or left <= 0:
                if storing is not None:
                    await storing
                return record
            if self.store.signals.listening or (self.worker and self.worker.runs(record.id)):
                pause = left
            else:
                pause, delay = min(left, delay), min(delay * 2, self.poll_interval)
            await sleep_or_wake(watch.event, pause)
            if storing is not None and storing.done():
                storing.result()  # raises what refused the insert
            arrived = watch.take()
            if arrived is not None and may_see(caller, arrived):
                record = arrived
            else:
                record = await asyncio.to_thread(self.get, record.id, caller)

    def get(self, execution_id: str, caller: DescribeCaller) -> DescribeExecution:
        """The execution if the caller owns it or is an admin; else "not found" either way."""
        record = self.store.executions.get(execution_id)
        if record is None or not may_see(caller, record):
            raise NotFound(f"no execution {execution_id!r}", field="execution_id")
        return record

    def page(self, query: ListExecutionsQuery, caller: DescribeCaller) -> ExecutionPage:
        """The caller's executions; an admin's query sees everyone's (``owner`` narrows it)."""
        return self.store.executions.page(query, only_owner=None if caller.admin else caller.user)

    async def cancel(self, execution_id: str, caller: DescribeCaller) -> DescribeExecution:
        record = await asyncio.to_thread(self.get, execution_id, caller)
        if record.status.final:
            raise Conflict(
                f"execution {execution_id} already ended as {record.status}",
                field="execution_id",
            )
        await asyncio.to_thread(self.lifecycle.cancel, execution_id, datetime.now(UTC))
        return await self.wait(execution_id, 5.0, caller)

    def artifact(self, execution_id: str, kind: str, caller: DescribeCaller) -> str:
        record = self.get(execution_id, caller)
        content = self.store.executions.artifact(execution_id, kind)
        if content is None:
            raise NotFound(
                f"execution {execution_id} has no {kind} yet (it is {record.status})",
                field="execution_id",
            )
        return content

    def html(self, execution_id: str, caller: DescribeCaller) -> str:
        """The executed notebook as HTML, opened by what failed and why when it did; rendered
        on first request and cached on disk."""
        record = self.get(execution_id, caller)  # the cache answers only whom the record would
        cached = self.cache_dir / f"{execution_id}.html"
        if cached.exists():
            return cached.read_text(encoding="utf-8")
        notebook = self.artifact(execution_id, "ipynb", caller)
        import nbformat

        quiet_missing_cell_ids()
        node = nbformat.reads(notebook, as_version=4)
        body = notebook_page(node, execution_failure(record, node.cells), record.notebook)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".tmp")
        partial.write_text(body, encoding="utf-8")
        partial.replace(cached)
        return str(body)
