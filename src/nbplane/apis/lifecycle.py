"""The notebook-API execution lifecycle: the one writer of an execution's status.

::

    queued ──▶ running ──▶ completed | failed | timed_out | cancelled
      │           │
      │           └──▶ queued (its worker was lost; a retry remains), else failed
      └──▶ cancelled (before it started)

:data:`~nbplane.apis.models.TRANSITIONS` lists these changes, and the store makes each one a
conditional UPDATE from the statuses it allows, so two workers never take the same execution and
a final status is never overwritten. The service (submit, cancel) and the worker (take, beat,
end, recover) change an execution only through :class:`ExecutionLifecycle`, which also puts in
words why an execution ended as it did (:class:`Ending`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from nbplane.apis.engines.base import ExecutionOutcome
from nbplane.apis.models import DescribeExecution, ExecutionStatus
from nbplane.errors import NbplaneError
from nbplane.platform.metrics import UNOBSERVED, Metrics
from nbplane.store import Store
from nbplane.store.apis import Claimed

REASON_PREFIX = {"kernel_died": "kernel died", "kernel_failed_to_start": "kernel failed to start"}


@dataclass(frozen=True)
class Ending:
    """How an execution ended: its final status, why, and what it left behind."""

    status: ExecutionStatus
    reason: str | None = None
    error: dict[str, Any] | None = None
    output: Any = None
    has_output: bool = False
    artifacts: dict[str, str] = field(default_factory=dict)
    """``ipynb`` (the executed notebook) and ``logs``, when it ran."""

    @classmethod
    def of_outcome(cls, outcome: ExecutionOutcome) -> Ending:
        """The status and the reason in words, from what the engine saw."""
        error = outcome.error or {}
        kind = str(error.get("reason") or "")
        message = error.get("message")
        reason = None
        if outcome.status == "failed":
            if kind == "exception":
                cell = error.get("cell")
                where = f"in cell {cell + 1}" if isinstance(cell, int) else "in the notebook"
                reason = f"exception {where}: {error.get('ename')}: {error.get('evalue')}"
            else:
                prefix = REASON_PREFIX.get(kind, kind or "failed")
                reason = f"{prefix}: {message}" if message else prefix
        elif outcome.status == "timed_out":
            reason = message or "timed out"
        elif outcome.status == "cancelled":
            reason = "cancelled"
        return cls(
            status=ExecutionStatus(outcome.status),
            reason=reason,
            error=outcome.error,
            output=outcome.output,
            has_output=outcome.has_output,
            artifacts={"ipynb": json.dumps(outcome.notebook), "logs": outcome.logs},
        )

    @classmethod
    def of_error(cls, exc: Exception) -> Ending:
        """Failed before or around the engine: by a known error, or by a bug of ours (an
        execution is never left running because of it)."""
        if isinstance(exc, NbplaneError):
            return cls(ExecutionStatus.FAILED, exc.message, exc.to_dict())
        return cls(
            ExecutionStatus.FAILED,
            f"nbplane failed: {exc!r}",
            {"reason": "internal", "message": repr(exc)},
        )

    def output_refused(self, exc: NbplaneError) -> Ending:
        """A completed run whose saved output breaks the output contract: failed."""
        return replace(
            self,
            status=ExecutionStatus.FAILED,
            reason=f"output schema: {exc.message}",
            error=exc.to_dict(),
        )


WORKER_STOPPED = Ending(
    ExecutionStatus.FAILED,
    "the worker stopped while the execution ran",
    {"reason": "worker_stopped"},
)


class ExecutionLifecycle:
    """Every status change of executions, as one conditional write each (blocking calls)."""

    def __init__(self, store: Store, metrics: Metrics = UNOBSERVED) -> None:
        self.store = store
        self.metrics = metrics

    def queue(self, record: DescribeExecution) -> None:
        """Store a new execution for any worker to take."""
        assert record.status == ExecutionStatus.QUEUED
        self.store.executions.create(record)

    def as_taken(
        self, record: DescribeExecution, worker_id: str, now: datetime
    ) -> DescribeExecution:
        """A new execution as running on ``worker_id`` from ``now``, skipping the queue; it
        exists once :meth:`take_now` stored it."""
        return record.model_copy(
            update={
                "status": ExecutionStatus.RUNNING,
                "worker_id": worker_id,
                "started_at": now,
                "attempts": 1,
            }
        )

    def take_now(self, taken: DescribeExecution) -> None:
        """Store a new execution :meth:`as_taken` (never queued, so no worker is told)."""
        assert taken.status == ExecutionStatus.RUNNING
        self.store.executions.create(taken)

    def claim(
        self, worker_id: str, now: datetime, notebooks: list[str] | None, limit: int = 1
    ) -> Claimed:
        """Up to ``limit`` of the oldest queued executions (of these notebooks), now running on
        ``worker_id``, and whether others still wait."""
        return self.store.executions.claim(worker_id, now, notebooks, limit)

    def beat(self, execution_id: str, worker_id: str, now: datetime) -> bool:
        """Keep a running execution ``worker_id``'s; True when its cancellation was asked for."""
        return self.store.executions.heartbeat(execution_id, worker_id, now)

    def end(
        self, record: DescribeExecution, worker_id: str, ending: Ending, now: datetime
    ) -> DescribeExecution | None:
        """Give ``worker_id``'s running execution its final status, with its output, its
        ``timings`` and its artifacts, in one write; the final record, or None when something
        else ended it first (a cancel before it started, a reaper)."""
        assert ending.status.final
        final = record.model_copy(
            update={
                "status": ending.status,
                "reason": ending.reason,
                "error": ending.error,
                "output": ending.output,
                "has_output": ending.has_output,
                "finished_at": now,
            }
        )
        if not self.store.executions.finish(final, worker_id, ending.artifacts):
            return None
        status = str(ending.status)
        self.metrics.api_executions.labels(status).inc()
        if record.started_at is not None:
            seconds = (now - record.started_at).total_seconds()
            self.metrics.api_execution_duration.labels(status).observe(max(seconds, 0.0))
        return final

    def cancel(self, execution_id: str, now: datetime) -> DescribeExecution | None:
        """A queued execution ends cancelled at once; a running one is asked to stop (its
        worker hears it at once through the store's signals, else at its next beat)."""
        return self.store.executions.request_cancel(execution_id, now)

    def recover_lost(self, now: datetime, stale_after: timedelta) -> list[str]:
        """Executions whose worker stopped beating: queued again when a retry remains, else
        failed as "worker lost". Returns the ids queued again."""
        return self.store.executions.recover_lost(now, stale_after)
