"""The job execution lifecycle: the only writer of a job execution's status.

An execution is queued (by a user or the scheduler), started by one replica's monitor, and ends
once: completed or failed as its own process reports, or failed, timed out or cancelled as the
monitor decides. The service, the reconciler's loops and the execution API all change a status
through :class:`JobExecutionLifecycle`, and every change is a compare-and-set in the store, so of
two writers racing (two replicas, the monitor and the job's process) exactly one wins.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from nbplane._time import now
from nbplane.deployments.models import DescribeDeployment, JobExecutionStatus, NotificationEvent
from nbplane.store.deployments import DeploymentStore

QUEUED, RUNNING = JobExecutionStatus.QUEUED, JobExecutionStatus.RUNNING
NOTIFIED: dict[JobExecutionStatus, NotificationEvent] = {
    JobExecutionStatus.COMPLETED: NotificationEvent.COMPLETED,
    JobExecutionStatus.FAILED: NotificationEvent.FAILED,
    JobExecutionStatus.TIMED_OUT: NotificationEvent.FAILED,
}
"""The event each final status is told as (a cancelled execution is told nobody)."""


def allowed_from(status: JobExecutionStatus) -> frozenset[JobExecutionStatus]:
    """The statuses an execution may be in to move to ``status``."""
    sources = status.sources()
    if not sources:
        raise ValueError(f"no job execution moves to {status}")
    return sources


class JobExecutionLifecycle:
    def __init__(self, deployments: DeploymentStore) -> None:
        self.deployments = deployments

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

    def start(self, execution_id: str, executor_state: dict[str, Any]) -> bool:
        """Queued -> running, with what the executor needs to find it again; False when another
        replica started it, or it ended meanwhile."""
        return self.deployments.change_status(
            execution_id,
            RUNNING,
            allowed_from(RUNNING),
            started_at=now(),
            executor_state=executor_state,
        )

    def finish(
        self,
        execution_id: str,
        status: JobExecutionStatus,
        reason: str | None,
        error: dict[str, Any] | None = None,
    ) -> bool:
        """Give the execution its final status, and queue its notifications (sent by
        deployments/notifications.py, never here); False when it has a final status already."""
        if not status.final:
            raise ValueError(f"{status} is not a final status")
        changed = self.deployments.change_status(
            execution_id,
            status,
            allowed_from(status),
            reason=reason,
            error=error,
            finished_at=now(),
        )
        if changed and status in NOTIFIED:
            self.deployments.enqueue_notifications(execution_id, NOTIFIED[status])
        return changed

    def request_cancel(self, execution_id: str) -> None:
        """Ask the monitor to cancel it (it cancels a queued one before it starts); a final
        execution stays as it ended."""
        self.deployments.request_cancel(execution_id)
