"""Executions in nbplane's database: the durable queue every server and worker shares."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from pydantic import ValidationError
from sqlalchemy import Engine, and_, bindparam, func, insert, or_, select, update

from nbplane.apis.models import (
    DescribeExecution,
    ExecutionPage,
    ExecutionStatus,
    ListExecutionsQuery,
)
from nbplane.platform.storable import sendable
from nbplane.store.notify import ExecutionSignals, Signal, SignalKind
from nbplane.store.tables import execution_artifacts, executions

log = logging.getLogger(__name__)

DESCRIBE_COLUMNS = [
    # created_by is the owner column: rows from before owners existed named a token there
    executions.c.owner.label(name) if name == "created_by" else executions.c[name]
    for name in DescribeExecution.model_fields
]
FALLBACKS: dict[str, Any] = {"parameters": {}, "status": ExecutionStatus.FAILED}
"""What a stored field that no longer fits the model is shown as (else: the field's default)."""

# The statements of an API execution's path (its insert, final update and reads), built once
# with bound parameters: building and coercing one per call cost more than running it.
INSERT_EXECUTION = insert(executions)
INSERT_ARTIFACTS = insert(execution_artifacts)
GET_EXECUTION = select(*DESCRIBE_COLUMNS).where(executions.c.id == bindparam("execution_id"))
FINISH_VALUES = ("status", "reason", "error", "output", "has_output", "finished_at", "timings")
FINISH_EXECUTION = (
    update(executions)
    .where(
        executions.c.id == bindparam("execution_id"),
        executions.c.status.in_(bindparam("sources", expanding=True)),
    )
    .values({name: bindparam(f"new_{name}") for name in FINISH_VALUES})
)
FINISH_OWNED_EXECUTION = FINISH_EXECUTION.where(executions.c.worker_id == bindparam("by_worker"))


class Claimed(NamedTuple):
    """What a worker took from the queue, oldest first, and whether others still wait."""

    taken: list[DescribeExecution]
    others_wait: bool


class ExecutionStore:
    """Reads and writes executions; every status change is one conditional UPDATE, so two
    workers never both take the same execution and a final status is never overwritten.
    Statuses are changed only by :class:`~nbplane.apis.lifecycle.ExecutionLifecycle`."""

    def __init__(self, engine: Engine, signals: ExecutionSignals) -> None:
        self.engine = engine
        self.signals = signals

    def create(self, record: DescribeExecution) -> None:
        """Store a new execution: queued (signalled to the workers), or already running when
        its worker took it directly."""
        queued = record.status == ExecutionStatus.QUEUED
        values = record.model_dump()
        values.update(owner=record.created_by, heartbeat_at=record.started_at)
        with self.engine.begin() as connection:
            connection.execute(INSERT_EXECUTION, values)
            signals = [Signal("queued", record.id)] if queued else []
            self.signals.notify(connection, signals)
        self.signals.deliver(signals)

    def get(self, execution_id: str) -> DescribeExecution | None:
        with self.engine.connect() as connection:
            found = connection.execute(GET_EXECUTION, {"execution_id": execution_id})
            row = found.mappings().first()
        return describe(row) if row else None

    def page(self, query: ListExecutionsQuery, only_owner: str | None) -> ExecutionPage:
        """A page of executions, newest first; ``only_owner``: that user's alone (the query's
        ``owner`` narrows further, so asking for someone else's finds nothing)."""
        conditions = []
        for owner in (only_owner, query.owner):
            if owner is not None:
                conditions.append(executions.c.owner == owner)
        if query.notebook:
            conditions.append(executions.c.notebook == query.notebook)
        if query.status:
            conditions.append(executions.c.status == query.status)
        with self.engine.connect() as connection:
            total = connection.execute(
                select(func.count()).select_from(executions).where(*conditions)
            ).scalar_one()
            rows = (
                connection.execute(
                    select(*DESCRIBE_COLUMNS)
                    .where(*conditions)
                    .order_by(executions.c.created_at.desc(), executions.c.id)
                    .limit(query.limit)
                    .offset(query.offset)
                )
                .mappings()
                .all()
            )
        return ExecutionPage(
            items=[describe(row) for row in rows],
            total=total,
            limit=query.limit,
            offset=query.offset,
        )

    def queued(self) -> int:
        """How many executions wait for a worker."""
        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    select(func.count())
                    .select_from(executions)
                    .where(executions.c.status == ExecutionStatus.QUEUED)
                ).scalar_one()
            )

    def claim(
        self,
        worker_id: str,
        now: datetime,
        notebooks: list[str] | None = None,
        limit: int = 1,
    ) -> Claimed:
        """Take up to ``limit`` of the oldest queued executions (of these notebooks) for this
        worker, atomically, oldest first; and say whether others still wait (read in the same
        transaction, so that the worker need not write again to find the queue empty)."""
        taken_from = ExecutionStatus.RUNNING.sources()
        waiting = select(executions.c.id).where(executions.c.status.in_(taken_from))
        if notebooks is not None:
            waiting = waiting.where(executions.c.notebook.in_(notebooks))
        candidates = waiting.order_by(executions.c.created_at).limit(limit)
        if self.engine.dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        with self.engine.begin() as connection:
            rows = (
                connection.execute(
                    update(executions)
                    .where(executions.c.id.in_(candidates), executions.c.status.in_(taken_from))
                    .values(
                        status=ExecutionStatus.RUNNING,
                        worker_id=worker_id,
                        started_at=now,
                        heartbeat_at=now,
                        attempts=executions.c.attempts + 1,
                    )
                    .returning(*DESCRIBE_COLUMNS)
                )
                .mappings()
                .all()
            )
            others_wait = len(rows) == limit and bool(connection.execute(waiting.limit(1)).first())
        taken = sorted((describe(row) for row in rows), key=lambda record: record.created_at)
        return Claimed(taken, others_wait)

    def heartbeat(self, execution_id: str, worker_id: str, now: datetime) -> bool:
        """Keep a running execution ours; True when its cancellation was asked for."""
        with self.engine.begin() as connection:
            cancel = connection.execute(
                update(executions)
                .where(executions.c.id == execution_id, executions.c.worker_id == worker_id)
                .values(heartbeat_at=now)
                .returning(executions.c.cancel_requested)
            ).scalar()
        return bool(cancel)

    def finish(
        self,
        final: DescribeExecution,
        worker_id: str | None,
        artifacts: dict[str, str] | None = None,
    ) -> bool:
        """Give a running execution its final status, output, timings and artifacts in one
        transaction, unless something else ended it first; signalled to its waiters."""
        statement = FINISH_OWNED_EXECUTION if worker_id is not None else FINISH_EXECUTION
        values = {
            "status": final.status,
            # what a notebook saved or raised may hold what JSON columns refuse
            "reason": sendable(final.reason),
            "error": sendable(final.error),
            "output": sendable(final.output),
            "has_output": final.has_output,
            "finished_at": final.finished_at,
            "timings": final.timings,
        }
        with self.engine.begin() as connection:
            updated = connection.execute(
                statement,
                {
                    "execution_id": final.id,
                    "sources": final.status.sources(),
                    "by_worker": worker_id,
                    **{f"new_{name}": value for name, value in values.items()},
                },
            ).rowcount
            if updated and artifacts:
                connection.execute(
                    INSERT_ARTIFACTS,
                    [
                        {"execution_id": final.id, "kind": kind, "content": content}
                        for kind, content in artifacts.items()
                    ],
                )
            signals = [Signal("final", final.id, final)] if updated else []
            self.signals.notify(connection, signals)
        self.signals.deliver(signals)
        return bool(updated)

    def request_cancel(self, execution_id: str, now: datetime) -> DescribeExecution | None:
        """Cancel: a queued execution ends at once; a running one is told through its row and
        a signal to its worker."""
        with self.engine.begin() as connection:
            ended = connection.execute(
                update(executions)
                .where(
                    executions.c.id == execution_id,
                    executions.c.status == ExecutionStatus.QUEUED,
                )
                .values(
                    status=ExecutionStatus.CANCELLED,
                    reason="cancelled before it started",
                    finished_at=now,
                    cancel_requested=True,
                )
            ).rowcount
            asked = connection.execute(
                update(executions)
                .where(
                    executions.c.id == execution_id,
                    executions.c.status == ExecutionStatus.RUNNING,
                )
                .values(cancel_requested=True)
            ).rowcount
            kind: SignalKind = "final" if ended else "cancel"
            signals = [Signal(kind, execution_id)] if ended or asked else []
            self.signals.notify(connection, signals)
        self.signals.deliver(signals)
        return self.get(execution_id)

    def recover_lost(self, now: datetime, stale_after: timedelta) -> list[str]:
        """Executions whose worker stopped beating: retried when attempts remain, else ended
        as "worker lost". Returns the ids retried."""
        stale = and_(
            executions.c.status == ExecutionStatus.RUNNING,
            or_(executions.c.heartbeat_at.is_(None), executions.c.heartbeat_at < now - stale_after),
        )
        with self.engine.begin() as connection:
            retried = (
                connection.execute(
                    update(executions)
                    .where(stale, executions.c.attempts <= executions.c.retries)
                    .values(status=ExecutionStatus.QUEUED, worker_id=None, heartbeat_at=None)
                    .returning(executions.c.id)
                )
                .scalars()
                .all()
            )
            lost = (
                connection.execute(
                    update(executions)
                    .where(stale)
                    .values(
                        status=ExecutionStatus.FAILED,
                        reason="worker lost: the process running it stopped before it finished",
                        error={"reason": "worker_lost"},
                        finished_at=now,
                    )
                    .returning(executions.c.id)
                )
                .scalars()
                .all()
            )
            signals = [Signal("queued", execution_id) for execution_id in retried]
            signals += [Signal("final", execution_id) for execution_id in lost]
            self.signals.notify(connection, signals)
        self.signals.deliver(signals)
        return list(retried)

    def artifact(self, execution_id: str, kind: str) -> str | None:
        with self.engine.connect() as connection:
            content: str | None = connection.execute(
                select(execution_artifacts.c.content).where(
                    execution_artifacts.c.execution_id == execution_id,
                    execution_artifacts.c.kind == kind,
                )
            ).scalar()
        return content


def describe(row: Mapping[Any, Any]) -> DescribeExecution:
    """A stored row as the API shows it, whatever the row holds: a value that cannot be sent
    as JSON text (a lone surrogate, NaN) is repaired, and a field that does not fit the model
    is shown as its fallback, so one odd row never fails a listing."""
    values = {key: sendable(value) for key, value in row.items()}
    if values.get("timings") is None:  # a row from before timings were recorded
        values["timings"] = {}
    try:
        return DescribeExecution.model_validate(values)
    except ValidationError as exc:
        unfit = sorted({str(error["loc"][0]) for error in exc.errors() if error["loc"]})
    log.warning("execution %s: stored %s do not fit; shown as defaults", values.get("id"), unfit)
    for name in unfit:
        fallback = FALLBACKS.get(name)
        if fallback is None:
            fallback = DescribeExecution.model_fields[name].get_default(call_default_factory=True)
        values[name] = fallback
    return DescribeExecution.model_validate(values)
