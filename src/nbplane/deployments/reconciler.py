"""The deployments' loops (scheduler, monitor, notifier, retention), run by the one replica
holding the control lease (``platform/lease.py``) against the shared database.

The scheduler starts a deployment's run when it is due. Should two replicas ever run it at once
(a lease taken over from a holder too slow to notice it lost it), a compare-and-set on
``deployments.next_run_at`` (only the one that moves it on starts the run) and a unique (job,
due time) on executions still make a due time run exactly once.
Missed runs (no server was up at the due time): when the latest missed due time is within
``NBPLANE_SCHEDULE_MISSED_GRACE_SECONDS`` it runs once, late; older ones are skipped. Either
way, several missed due times never pile up into several runs.

The monitor starts queued executions on their executor, and watches running ones: a cancel
request or a timeout stops them, and one whose process ended without recording a result fails
with the exit code and the executor's last words. Every failure it sees is the platform's
(:class:`~nbplane.deployments.models.FailureKind`); the lifecycle decides whether the execution
retries, and the monitor starts a retrying execution's next attempt at its ``retry_at``, with a
fresh credential, under a log header of its own.

Retention, every ``NBPLANE_RETENTION_INTERVAL_SECONDS``, prunes deployed jobs' old executions
with their runs and logs (``jobs/retention.py``); replicas doing it at once is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from nbplane._time import now, sleep_or_wake
from nbplane.deployments.context import new_execution_token
from nbplane.deployments.executors import JobExecutor, executor_named
from nbplane.deployments.models import (
    DueDeployment,
    FailureKind,
    JobExecutionRecord,
    JobExecutionStatus,
)
from nbplane.deployments.notifications import Notifier
from nbplane.deployments.schedule import next_fire
from nbplane.deployments.service import DeploymentService
from nbplane.errors import InvalidInput, NbplaneError
from nbplane.jobs.retention import prune_deployed
from nbplane.store.auth import token_hash

log = logging.getLogger("nbplane.deployments")

MONITOR_SECONDS = 0.25
NOTIFY_SECONDS = 1.0
"""How often the notifier looks for late executions and notifications due."""
SCHEDULER_MAX_SLEEP = 0.5
"""Longest the scheduler sleeps before looking again, so another replica's new schedule is
seen within about this long."""
ORPHAN_SECONDS = 30.0
"""A running execution with no executor state for this long lost its replica while starting."""
LOG_TAIL_CHARACTERS = 4000
RETENTION_FIRST_SECONDS = 60.0
"""The first retention pass waits this long after start, out of start-up's way."""


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class DeploymentReconciler:
    def __init__(self, service: DeploymentService) -> None:
        self.service = service
        self.deployments = service.deployments
        self.lifecycle = service.lifecycle
        self.settings = service.settings
        self.replica = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._executors: dict[str, JobExecutor] = {}
        self._wake_scheduler = asyncio.Event()
        self._wake_monitor = asyncio.Event()
        self._wake_notifier = asyncio.Event()
        self.notifier = Notifier(service)
        self._stopping: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()
        self._on_change = lambda: loop.call_soon_threadsafe(self._wake)
        service.on_change.append(self._on_change)

    def _wake(self) -> None:
        self._wake_scheduler.set()
        self._wake_monitor.set()
        self._wake_notifier.set()

    def executor(self, name: str) -> JobExecutor:
        if name not in self._executors:
            self._executors[name] = executor_named(name, self.settings)
        return self._executors[name]

    async def start(self) -> None:
        self.executor(self.service.executor)  # a bad NBPLANE_JOB_EXECUTOR fails the start
        self._tasks = [
            asyncio.create_task(self._forever(self.schedule_due, self._wake_scheduler, None)),
            asyncio.create_task(self._forever(self.watch, self._wake_monitor, MONITOR_SECONDS)),
            asyncio.create_task(
                self._forever(self.notifier.run, self._wake_notifier, NOTIFY_SECONDS)
            ),
        ]
        if self.settings.retention_interval_seconds:
            self._tasks.append(asyncio.create_task(self._retention()))

    async def stop(self) -> None:
        self.service.on_change.remove(self._on_change)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for executor in self._executors.values():
            await executor.close()

    async def _forever(self, step: Any, wake: asyncio.Event, interval: float | None) -> None:
        while True:
            wake.clear()
            try:
                sleep = await step()
            except Exception:  # a loop that dies would stop every schedule: log and go on
                log.exception("deployments loop failed; retrying")
                sleep = 1.0
            await sleep_or_wake(wake, interval if interval is not None else sleep)

    # retention
    async def _retention(self) -> None:
        await asyncio.sleep(RETENTION_FIRST_SECONDS)
        interval = self.settings.retention_interval_seconds
        await self._forever(self.apply_retention, asyncio.Event(), interval)

    async def apply_retention(self) -> float:
        """Prune old executions of deployed jobs, with their runs, logs and what their
        executors keep of them; never one that has not ended."""
        self.executor(self.service.executor)
        for pruned in await asyncio.to_thread(prune_deployed, self.service.store, self.settings):
            if pruned.removed_anything:
                log.info("retention: %s: removed %s", pruned.job, pruned.summary())
            for execution_id in pruned.executions:
                for executor in list(self._executors.values()):
                    await executor.discard(execution_id)
        return self.settings.retention_interval_seconds

    # the scheduler
    async def schedule_due(self) -> float:
        """Start what is due; returns how long to sleep until the next due time."""
        current = now()
        for due in await asyncio.to_thread(self.deployments.due, current):
            await asyncio.to_thread(self._start_due, due, current)
        following = await asyncio.to_thread(self.deployments.next_due)
        if following is None:
            return SCHEDULER_MAX_SLEEP
        return max(0.0, min((as_utc(following) - now()).total_seconds(), SCHEDULER_MAX_SLEEP))

    def _start_due(self, due: DueDeployment, current: datetime) -> None:
        deployment = due.deployment
        assert deployment.schedule is not None and deployment.next_run_at is not None
        due_at = deployment.next_run_at
        try:
            following = next_fire(deployment.schedule, deployment.timezone, max(current, due_at))
        except InvalidInput as exc:  # stored before a rule that refuses it (e.g. every second)
            log.warning(
                "%s/%s: schedule %r is off until the job is deployed again: %s",
                due.team,
                due.job,
                deployment.schedule,
                exc.message,
            )
            self.deployments.advance_schedule(due.job_id, due_at, None)
            return
        if not self.deployments.advance_schedule(due.job_id, due_at, following):
            return  # another replica took this due time
        late = (current - due_at).total_seconds()
        if late > self.settings.schedule_missed_grace_seconds:
            log.warning(
                "%s/%s: skipped the run due at %s, %.0f s ago (no server was running); next at %s",
                due.team,
                due.job,
                due_at.isoformat(),
                late,
                following.isoformat(),
            )
            return
        self.service.metrics.schedule_lag.observe(max(late, 0.0))
        self.service.start_execution(
            due.job_id, deployment, "schedule", deployment.arguments, scheduled_for=due_at
        )

    # the monitor
    async def watch(self) -> float:
        for execution in await asyncio.to_thread(self.deployments.active_executions):
            if execution.id in self._stopping:
                continue
            try:
                if execution.status == JobExecutionStatus.RUNNING:
                    await self._check(execution)
                else:
                    await self._launch(execution)
            except Exception as exc:  # one execution's trouble must not stall the others
                log.exception("watching execution %s failed", execution.id)
                await self._finish(execution, JobExecutionStatus.FAILED, f"nbplane failed: {exc!r}")
        return MONITOR_SECONDS

    async def _launch(self, execution: JobExecutionRecord) -> None:
        """Start the next attempt of a queued execution, or of a retrying one at its
        ``retry_at``; cancel it instead when that was asked."""
        queued = execution.status == JobExecutionStatus.QUEUED
        if execution.cancel_requested:
            await self._finish(
                execution,
                JobExecutionStatus.CANCELLED,
                "cancelled before it started" if queued else "cancelled while waiting to retry",
            )
            return
        if not queued and execution.retry_at is not None and as_utc(execution.retry_at) > now():
            return
        attempt = execution.attempt + 1
        token = new_execution_token()
        claimed = await asyncio.to_thread(
            self.lifecycle.start,
            execution.id,
            attempt,
            {"replica": self.replica},
            token_hash(token),
        )
        if not claimed:
            return  # another replica started it
        execution = execution.model_copy(
            update={"attempt": attempt, "status": JobExecutionStatus.RUNNING}
        )
        if execution.retries:
            header = attempt_header(attempt, execution.retries + 1)
            separator = "" if queued else "\n"
            await asyncio.to_thread(
                self.deployments.append_log, execution.id, f"{separator}{header}\n"
            )
        executor = self.executor(execution.executor)
        if not self.service.server_url:
            await self._finish(
                execution,
                JobExecutionStatus.FAILED,
                "could not start: NBPLANE_JOB_SERVER_URL is not set",
            )
            return
        try:
            state = await executor.start(executor.ticket(execution, self.service.server_url, token))
        except NbplaneError as exc:
            await self._finish(
                execution, JobExecutionStatus.FAILED, f"could not start: {exc.message}"
            )
            return
        except Exception as exc:
            await self._finish(execution, JobExecutionStatus.FAILED, f"could not start: {exc!r}")
            return
        await asyncio.to_thread(
            self.deployments.set_executor_state, execution.id, {**state, "replica": self.replica}
        )

    async def _check(self, execution: JobExecutionRecord) -> None:
        state = execution.executor_state or {}
        started = execution.attempt_started_at or now()
        if "replica" in state and len(state) == 1:  # still starting
            if now() - started > timedelta(seconds=ORPHAN_SECONDS):
                await self._finish(
                    execution, JobExecutionStatus.FAILED, "lost: the server starting it stopped"
                )
            return
        executor = self.executor(execution.executor)
        if execution.cancel_requested:
            await self._stop(execution, executor, JobExecutionStatus.CANCELLED, "cancelled")
        elif now() - started > timedelta(seconds=execution.timeout):
            await self._stop(
                execution,
                executor,
                JobExecutionStatus.TIMED_OUT,
                f"timed out after {execution.timeout:g} s",
            )
        else:
            status = await executor.poll(state)
            if status.running:
                return
            await asyncio.sleep(0.5)  # the process may be recording its own result right now
            fresh = await asyncio.to_thread(self.deployments.execution_record, execution.id)
            if fresh.status != JobExecutionStatus.RUNNING or fresh.attempt != execution.attempt:
                return  # the attempt recorded its end (or a retry of it runs)
            code = f"exit code {status.exit_code}" if status.exit_code is not None else ""
            words = ", ".join(part for part in (status.reason, code) if part)
            await self._save_executor_logs(execution, executor, state)
            await self._finish(
                execution,
                JobExecutionStatus.FAILED,
                f"the job's process ended ({words or 'gone'}) before it recorded a result",
            )

    async def _stop(
        self,
        execution: JobExecutionRecord,
        executor: JobExecutor,
        status: JobExecutionStatus,
        reason: str,
    ) -> None:
        self._stopping.add(execution.id)
        try:
            await executor.stop(execution.executor_state or {})
            await self._finish(execution, status, reason)
        finally:
            self._stopping.discard(execution.id)

    async def _save_executor_logs(
        self, execution: JobExecutionRecord, executor: JobExecutor, state: dict[str, Any]
    ) -> None:
        """When the attempt said nothing into our log, keep what its executor saw instead."""
        ours, _ = await asyncio.to_thread(self.deployments.read_log, execution.id, 0)
        header = attempt_header(execution.attempt, execution.retries + 1)
        if ours.rpartition(header)[2].strip():
            return
        theirs = await executor.logs(state)
        if theirs:
            await asyncio.to_thread(
                self.deployments.append_log, execution.id, theirs[-LOG_TAIL_CHARACTERS:]
            )

    async def _finish(
        self, execution: JobExecutionRecord, status: JobExecutionStatus, reason: str
    ) -> None:
        """End the execution's running attempt as seen in ``execution`` (or the execution,
        when none was running): a failure the monitor sees is the platform's."""
        running = execution.status == JobExecutionStatus.RUNNING
        ending = await asyncio.to_thread(
            lambda: self.lifecycle.finish(
                execution.id,
                status,
                reason,
                attempt=execution.attempt if running else None,
                failure=FailureKind.PLATFORM,
            )
        )
        if ending:
            await asyncio.to_thread(
                self.deployments.append_log, execution.id, f"\n{ending.status}: {ending.reason}\n"
            )


def attempt_header(number: int, total: int) -> str:
    """The line that opens an attempt's part of the execution's log."""
    return f"=== nbplane: attempt {number} of {total} ==="
