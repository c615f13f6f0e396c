"""The job execution lifecycle: the only writer of a job execution's status.

An execution is queued (by a user or the scheduler), and its first attempt started by one
replica's monitor. An attempt ends once: completed or failed as its own process reports, or
failed, timed out or cancelled as the monitor decides. A failed or timed-out attempt makes the
execution ``retrying`` when its deployment's retries allow another attempt for that kind of
failure (:class:`~nbplane.deployments.models.RetryOn`), and the monitor starts that attempt at
``retry_at``; otherwise the attempt's end is the execution's final status. The service, the
reconciler's loops and the execution API all change a status through
:class:`JobExecutionLifecycle`, and every change is a compare-and-set in the store on the status
and the attempt's number, so of two writers racing (two replicas, the monitor and the job's
process) exactly one wins.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nbplane._time import now
from nbplane.deployments.models import (
    DescribeDeployment,
    FailureKind,
    JobExecutionRecord,
    JobExecutionStatus,
    NotificationEvent,
    retry_wait,
)
from nbplane.platform.metrics import UNOBSERVED, Metrics
from nbplane.store.deployments import DeploymentStore

QUEUED, RUNNING = JobExecutionStatus.QUEUED, JobExecutionStatus.RUNNING
RETRYING = JobExecutionStatus.RETRYING
RETRIABLE = frozenset({JobExecutionStatus.FAILED, JobExecutionStatus.TIMED_OUT})
NOTIFIED: dict[JobExecutionStatus, NotificationEvent] = {
    JobExecutionStatus.COMPLETED: NotificationEvent.COMPLETED,
    JobExecutionStatus.FAILED: NotificationEvent.FAILED,
    JobExecutionStatus.TIMED_OUT: NotificationEvent.FAILED,
}
"""The event each final status is told as (a cancelled execution is told nobody, an attempt
that will be retried neither)."""


def allowed_from(status: JobExecutionStatus) -> frozenset[JobExecutionStatus]:
    """The statuses an execution may be in to move to ``status``."""
    sources = status.sources()
    if not sources:
        raise ValueError(f"no job execution moves to {status}")
    return sources


@dataclass(frozen=True)
class Ending:
    """How an attempt's end left the execution: its new status and reason."""

    status: JobExecutionStatus
    reason: str | None


class JobExecutionLifecycle:
    def __init__(self, deployments: DeploymentStore, metrics: Metrics = UNOBSERVED) -> None:
        self.deployments = deployments
        self.metrics = metrics

    def queue(
        self,
        job_id: int,
        deployment: DescribeDeployment,
        started_by: str,
        arguments: dict[str, Any],
        scheduled_for: datetime | None = None,
    ) -> str | None:
        """A new queued execution of the deployed version; None if that schedule slot has one."""
        execution_id = str(uuid.uuid4())
        created = self.deployments.create_execution(
            job_id, execution_id, QUEUED, deployment, started_by, arguments, scheduled_for
        )
        return execution_id if created else None

    def start(
        self, execution_id: str, attempt: int, executor_state: dict[str, Any], token_hash: str
    ) -> bool:
        """Queued or retrying -> running: attempt number ``attempt``, with what the executor
        needs to find it again and the hash of the attempt's own credential (the one of an
        earlier attempt ended with it). False when another replica started this attempt, or the
        execution ended meanwhile."""
        return self.deployments.start_attempt(
            execution_id, attempt, allowed_from(RUNNING), executor_state, token_hash
        )

    def finish(
        self,
        execution_id: str,
        status: JobExecutionStatus,
        reason: str | None,
        error: dict[str, Any] | None = None,
        *,
        attempt: int | None = None,
        failure: FailureKind | None = None,
    ) -> Ending | None:
        """End the execution's current attempt with ``status``: ``attempt`` is the running
        attempt the caller speaks for (the job's process, the monitor watching it), None to end
        the execution whatever it does (cancelled while queued or waiting to retry). A failed or
        timed-out attempt whose ``failure`` kind the deployment retries, with attempts left,
        makes the execution retrying; otherwise ``status`` is its final one, and its
        notifications are queued (sent by deployments/notifications.py, never here). None when
        it ended already, or that attempt is over."""
        if not status.final:
            raise ValueError(f"{status} is not a final status")
        record = self.deployments.execution_record(execution_id)
        if attempt is not None and (record.status != RUNNING or record.attempt != attempt):
            return None
        number = record.attempt
        total = record.retries + 1
        retry_at = None
        if self._retries(record, number, status, failure):
            retry_at = now() + timedelta(seconds=retry_wait(record.retry_delay, number))
            ending = Ending(
                RETRYING,
                f"attempt {number} of {total} {_ended(status)}: {reason or status}; "
                f"attempt {number + 1} at {retry_at:%Y-%m-%d %H:%M:%S} UTC",
            )
        else:
            ending = Ending(status, _final_reason(record, number, status, reason, failure))
        if record.status not in allowed_from(ending.status):
            return None
        # compare-and-set on the status and attempt the decision was made from: a writer that
        # read the execution before another one ended this attempt changes nothing
        won = self.deployments.end_attempt(
            execution_id,
            number,
            ending.status,
            {record.status},
            attempt_status=status,
            failure=failure if status in RETRIABLE else None,
            attempt_reason=reason,
            reason=ending.reason,
            error=error,
            retry_at=retry_at,
            notify=NOTIFIED.get(ending.status),
        )
        if not won:
            return None
        if ending.status.final:
            self.metrics.job_executions.labels(str(ending.status)).inc()
        return ending

    @staticmethod
    def _retries(
        record: JobExecutionRecord,
        number: int,
        status: JobExecutionStatus,
        failure: FailureKind | None,
    ) -> bool:
        return (
            status in RETRIABLE
            and failure is not None
            and record.status == RUNNING
            and number <= record.retries
            and record.retry_on.covers(failure)
        )

    def request_cancel(self, execution_id: str) -> None:
        """Ask the monitor to cancel it (it cancels a queued or retrying one before its next
        attempt starts); a final execution stays as it ended."""
        self.deployments.request_cancel(execution_id)


def _ended(status: JobExecutionStatus) -> str:
    return "timed out" if status == JobExecutionStatus.TIMED_OUT else str(status)


def _final_reason(
    record: JobExecutionRecord,
    number: int,
    status: JobExecutionStatus,
    reason: str | None,
    failure: FailureKind | None,
) -> str | None:
    """The attempt's reason, saying how many attempts ran when the deployment allows retries."""
    if not record.retries:
        return reason
    ran = f"{number} of {record.retries + 1} attempts ran"
    if status in RETRIABLE and failure is not None and not record.retry_on.covers(failure):
        ran += f"; retry_on '{record.retry_on}' does not retry a failure of the job's own code"
    return f"{reason or status} ({ran})"
