"""The control plane's records: jobs, versions, deployments, job executions and their logs.
Every status change is a conditional UPDATE, so replicas sharing the database never both start,
finish or schedule the same thing."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Connection, Engine, delete, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from nbplane._time import now
from nbplane.deployments.models import (
    DescribeDeployment,
    DescribeJob,
    DescribeJobExecution,
    DescribeJobExecutionAttempt,
    DescribeNotificationDelivery,
    DescribeVersion,
    DueDeployment,
    JobExecutionPage,
    JobExecutionRecord,
    JobExecutionStatus,
    ListJobExecutionsQuery,
    NotificationDelivery,
    NotificationEvent,
    NotificationStatus,
    NotificationTarget,
)
from nbplane.errors import Conflict, NotFound
from nbplane.jobs.models import DescribeRunStep
from nbplane.store.tables import (
    deployments,
    job_execution_attempts,
    job_execution_logs,
    job_executions,
    job_notifications,
    job_run_steps,
    job_versions,
    jobs,
)

ACTIVE = (JobExecutionStatus.QUEUED, JobExecutionStatus.RUNNING, JobExecutionStatus.RETRYING)
EXECUTION_COLUMNS = [
    column
    for column in job_executions.c
    if column.name in DescribeJobExecution.model_fields
    and column.name not in ("job", "team", "steps", "attempts")
]
DEPLOYMENT_COLUMNS = [column for column in deployments.c if column.name != "job_id"]
VERSION_COLUMNS = [
    column for column in job_versions.c if column.name not in ("job_id", "archive", "retention")
]


class DeploymentStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # jobs
    def create_job(
        self, team: str, name: str, description: str | None, by: str | None
    ) -> DescribeJob:
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    insert(jobs).values(
                        team=team,
                        name=name,
                        description=description,
                        created_at=now(),
                        created_by=by,
                    )
                )
        except IntegrityError:
            raise Conflict(f"team {team} has a job named {name!r} already", field="name") from None
        return self.job(team, name)

    def job_id(self, team: str, name: str) -> int:
        with self.engine.connect() as connection:
            found = connection.execute(
                select(jobs.c.id).where(jobs.c.team == team, jobs.c.name == name)
            ).scalar()
        if found is None:
            raise NotFound(f"no job {name!r} in team {team}", field="job", team=team, job=name)
        return int(found)

    def job(self, team: str, name: str, last: int = 5) -> DescribeJob:
        job_id = self.job_id(team, name)
        return self._describe_job(job_id, last)

    def list_jobs(self, team: str, last: int = 1) -> list[DescribeJob]:
        with self.engine.connect() as connection:
            ids = connection.execute(
                select(jobs.c.id).where(jobs.c.team == team).order_by(jobs.c.name)
            ).scalars()
            found = list(ids)
        return [self._describe_job(job_id, last) for job_id in found]

    def _describe_job(self, job_id: int, last: int) -> DescribeJob:
        with self.engine.connect() as connection:
            row = connection.execute(select(jobs).where(jobs.c.id == job_id)).mappings().one()
        page = self.page_executions(
            job_id, ListJobExecutionsQuery(limit=last, offset=0), steps=False
        )
        return DescribeJob(
            name=row["name"],
            team=row["team"],
            description=row["description"],
            created_at=row["created_at"],
            created_by=row["created_by"],
            deployment=self.deployment(job_id),
            last_executions=page.items,
        )

    def delete_job(self, job_id: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(jobs).where(jobs.c.id == job_id))

    # versions
    def add_version(
        self,
        job_id: int,
        version: str,
        archive: bytes,
        steps: list[str],
        by: str | None,
        retention: dict[str, float] | None = None,
    ) -> tuple[DescribeVersion, bool]:
        """Keep an uploaded archive; the same bytes twice are one version (False: not new).
        ``retention`` is what its config.ini's [retention] sets."""
        created = True
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    insert(job_versions).values(
                        job_id=job_id,
                        id=version,
                        size=len(archive),
                        steps=steps,
                        archive=archive,
                        created_at=now(),
                        created_by=by,
                        retention=retention or None,
                    )
                )
        except IntegrityError:
            created = False
        return self.version(job_id, version), created

    def versions(self, job_id: int) -> list[DescribeVersion]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(*VERSION_COLUMNS, jobs.c.name.label("job"), jobs.c.team)
                .join(jobs, jobs.c.id == job_versions.c.job_id)
                .where(job_versions.c.job_id == job_id)
                .order_by(job_versions.c.created_at.desc())
            ).mappings()
            return [DescribeVersion.model_validate(row) for row in rows]

    def version(self, job_id: int, wanted: str | None) -> DescribeVersion:
        """A version by id or unique id prefix; None means the newest upload."""
        found = self.versions(job_id)
        if wanted is None:
            if not found:
                raise NotFound("the job has no uploaded version yet", field="version")
            return found[0]
        matches = [version for version in found if version.id.startswith(wanted)]
        if len(matches) != 1:
            problem = "no version" if not matches else "more than one version"
            raise NotFound(f"{problem} of this job starts with {wanted!r}", field="version")
        return matches[0]

    def archive(self, job_id: int, version: str) -> bytes:
        with self.engine.connect() as connection:
            content = connection.execute(
                select(job_versions.c.archive).where(
                    job_versions.c.job_id == job_id, job_versions.c.id == version
                )
            ).scalar()
        if content is None:
            raise NotFound(f"no version {version!r} of this job", field="version")
        return bytes(content)

    # deployments
    def deployment(self, job_id: int) -> DescribeDeployment | None:
        with self.engine.connect() as connection:
            row = (
                connection.execute(
                    select(*DEPLOYMENT_COLUMNS).where(deployments.c.job_id == job_id)
                )
                .mappings()
                .first()
            )
        return DescribeDeployment.model_validate(row) if row else None

    def save_deployment(
        self, job_id: int, deployment: DescribeDeployment, targets: list[NotificationTarget]
    ) -> DescribeDeployment:
        """Save the deployment; its notification targets are ``targets`` (URLs sealed), not the
        redacted ones of ``deployment``."""
        values = deployment.model_dump(exclude={"notifications"})
        values["notifications"] = [target.model_dump(mode="json") for target in targets]
        with self.engine.begin() as connection:
            updated = connection.execute(
                update(deployments).where(deployments.c.job_id == job_id).values(**values)
            ).rowcount
            if not updated:
                connection.execute(insert(deployments).values(job_id=job_id, **values))
        found = self.deployment(job_id)
        assert found is not None
        return found

    def notification_targets(self, job_id: int) -> list[NotificationTarget]:
        """The deployment's notification targets with their sealed URLs (none: not deployed)."""
        with self.engine.connect() as connection:
            return _targets(connection, job_id)

    def delete_deployment(self, job_id: int) -> bool:
        with self.engine.begin() as connection:
            return bool(
                connection.execute(
                    delete(deployments).where(deployments.c.job_id == job_id)
                ).rowcount
            )

    def due(self, until: datetime) -> list[DueDeployment]:
        """Enabled scheduled deployments due by ``until``."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(deployments, jobs.c.team, jobs.c.name)
                .join(jobs, jobs.c.id == deployments.c.job_id)
                .where(
                    deployments.c.enabled.is_(True),
                    deployments.c.next_run_at.is_not(None),
                    deployments.c.next_run_at <= until,
                )
            ).mappings()
            return [
                DueDeployment(
                    job_id=row["job_id"],
                    team=row["team"],
                    job=row["name"],
                    deployment=DescribeDeployment.model_validate(row),
                )
                for row in rows
            ]

    def next_due(self) -> datetime | None:
        with self.engine.connect() as connection:
            found: datetime | None = connection.execute(
                select(func.min(deployments.c.next_run_at)).where(deployments.c.enabled.is_(True))
            ).scalar()
        return found.replace(tzinfo=UTC) if found is not None and found.tzinfo is None else found

    def advance_schedule(self, job_id: int, expected: datetime, following: datetime | None) -> bool:
        """Move ``next_run_at`` on, if it is still ``expected``: the replica that wins this
        compare-and-set is the one that starts the run."""
        with self.engine.begin() as connection:
            return bool(
                connection.execute(
                    update(deployments)
                    .where(deployments.c.job_id == job_id, deployments.c.next_run_at == expected)
                    .values(next_run_at=following)
                ).rowcount
            )

    # executions
    def create_execution(
        self,
        job_id: int,
        execution_id: str,
        status: JobExecutionStatus,
        deployment: DescribeDeployment,
        started_by: str,
        arguments: dict[str, Any],
        scheduled_for: datetime | None,
    ) -> bool:
        """Insert an execution of the deployed version; False when its scheduled time already
        has one."""
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    insert(job_executions).values(
                        id=execution_id,
                        job_id=job_id,
                        status=status,
                        version=deployment.version,
                        started_by=started_by,
                        scheduled_for=scheduled_for,
                        arguments=arguments,
                        resources=deployment.resources,
                        timeout=deployment.timeout,
                        retries=deployment.retries,
                        retry_delay=deployment.retry_delay,
                        retry_on=deployment.retry_on,
                        attempt=0,
                        executor=deployment.executor,
                        created_at=now(),
                        cancel_requested=False,
                    )
                )
        except IntegrityError:
            return False
        return True

    def execution(self, job_id: int, execution_id: str) -> DescribeJobExecution:
        found = self._executions(
            (job_executions.c.job_id == job_id, job_executions.c.id == execution_id), 1, 0
        )
        if not found:
            raise NotFound(f"no execution {execution_id!r} of this job", field="execution_id")
        return found[0]

    def page_executions(
        self, job_id: int, query: ListJobExecutionsQuery, steps: bool = True
    ) -> JobExecutionPage:
        return self._page([job_executions.c.job_id == job_id], query, steps)

    def page_team_executions(
        self, teams: list[str] | None, query: ListJobExecutionsQuery
    ) -> JobExecutionPage:
        """Executions of every job of ``teams`` (None: of all teams), newest first."""
        return self._page([] if teams is None else [jobs.c.team.in_(teams)], query, True)

    def _page(
        self, where: list[Any], query: ListJobExecutionsQuery, steps: bool
    ) -> JobExecutionPage:
        if query.status:
            where = [*where, job_executions.c.status == query.status]
        with self.engine.connect() as connection:
            total = connection.execute(
                select(func.count())
                .select_from(job_executions.join(jobs, jobs.c.id == job_executions.c.job_id))
                .where(*where)
            ).scalar_one()
        items = self._executions(tuple(where), query.limit, query.offset, steps)
        return JobExecutionPage(items=items, total=total, limit=query.limit, offset=query.offset)

    def _executions(
        self, where: tuple[Any, ...], limit: int, offset: int, steps: bool = True
    ) -> list[DescribeJobExecution]:
        with self.engine.connect() as connection:
            rows = list(
                connection.execute(
                    select(*EXECUTION_COLUMNS, job_executions.c.run_id, jobs.c.name, jobs.c.team)
                    .join(jobs, jobs.c.id == job_executions.c.job_id)
                    .where(*where)
                    .order_by(job_executions.c.created_at.desc(), job_executions.c.id)
                    .limit(limit)
                    .offset(offset)
                ).mappings()
            )
            attempts = self._attempts(connection, [row["id"] for row in rows])
            found = []
            for row in rows:
                record = DescribeJobExecution.model_validate(
                    {**row, "job": row["name"], "attempts": attempts.get(row["id"], [])}
                )
                if steps and row["run_id"] is not None:
                    record.steps = self._steps(connection, row["run_id"])
                if steps:
                    record.notifications = self._notifications(connection, row["id"])
                found.append(record)
        return found

    @staticmethod
    def _attempts(
        connection: Connection, execution_ids: list[str]
    ) -> dict[str, list[DescribeJobExecutionAttempt]]:
        rows = connection.execute(
            select(job_execution_attempts)
            .where(job_execution_attempts.c.execution_id.in_(execution_ids))
            .order_by(job_execution_attempts.c.number)
        ).mappings()
        found: dict[str, list[DescribeJobExecutionAttempt]] = {}
        for row in rows:
            attempt = DescribeJobExecutionAttempt.model_validate(row)
            found.setdefault(row["execution_id"], []).append(attempt)
        return found

    @staticmethod
    def _steps(connection: Connection, run_id: int) -> list[DescribeRunStep]:
        """The steps of the execution's run: of its latest attempt."""
        rows = connection.execute(
            select(*[c for c in job_run_steps.c if c.name not in ("checkpoint", "outputs")])
            .where(job_run_steps.c.run_id == run_id)
            .order_by(job_run_steps.c.position)
        ).mappings()
        return [DescribeRunStep.model_validate(row) for row in rows]

    @staticmethod
    def _notifications(
        connection: Connection, execution_id: str
    ) -> list[DescribeNotificationDelivery]:
        rows = connection.execute(
            select(job_notifications)
            .where(job_notifications.c.execution_id == execution_id)
            .order_by(job_notifications.c.id)
        ).mappings()
        return [DescribeNotificationDelivery.model_validate(row) for row in rows]

    def active_executions(self) -> list[JobExecutionRecord]:
        """Queued and running executions, with what the executors need to watch them."""
        return self._records(job_executions.c.status.in_(ACTIVE))

    def execution_record(self, execution_id: str) -> JobExecutionRecord:
        found = self._records(job_executions.c.id == execution_id)
        if not found:
            raise NotFound(f"no job execution {execution_id!r}", field="execution_id")
        return found[0]

    def execution_by_token(self, token_hash: str) -> JobExecutionRecord | None:
        """The running execution whose credential has this hash; a credential ends with its
        execution, so a final one is never returned."""
        found = self._records(
            job_executions.c.token_hash == token_hash,
            job_executions.c.status == JobExecutionStatus.RUNNING,
        )
        return found[0] if found else None

    def _records(self, *where: Any) -> list[JobExecutionRecord]:
        latest = job_execution_attempts
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    job_executions,
                    jobs.c.team,
                    jobs.c.name,
                    latest.c.started_at.label("attempt_started_at"),
                )
                .join(jobs, jobs.c.id == job_executions.c.job_id)
                .outerjoin(
                    latest,
                    (latest.c.execution_id == job_executions.c.id)
                    & (latest.c.number == job_executions.c.attempt),
                )
                .where(*where)
                .order_by(job_executions.c.created_at)
            ).mappings()
            return [JobExecutionRecord.model_validate({**row, "job": row["name"]}) for row in rows]

    def start_attempt(
        self,
        execution_id: str,
        number: int,
        allowed_from: Collection[JobExecutionStatus],
        executor_state: dict[str, Any],
        token_hash: str,
    ) -> bool:
        """Start attempt ``number`` with its own credential, if the execution is in
        ``allowed_from`` and its latest attempt is the one before: of replicas racing to start
        it, exactly one wins. Which change is allowed is
        :mod:`nbplane.deployments.lifecycle`'s to say."""
        started = now()
        with self.engine.begin() as connection:
            won = connection.execute(
                update(job_executions)
                .where(
                    job_executions.c.id == execution_id,
                    job_executions.c.status.in_(allowed_from),
                    job_executions.c.attempt == number - 1,
                )
                .values(
                    status=JobExecutionStatus.RUNNING,
                    attempt=number,
                    started_at=func.coalesce(job_executions.c.started_at, started),
                    retry_at=None,
                    executor_state=executor_state,
                    token_hash=token_hash,
                )
            ).rowcount
            if won:
                connection.execute(
                    insert(job_execution_attempts).values(
                        execution_id=execution_id,
                        number=number,
                        status=JobExecutionStatus.RUNNING,
                        started_at=started,
                    )
                )
            return bool(won)

    def end_attempt(
        self,
        execution_id: str,
        number: int,
        status: JobExecutionStatus,
        allowed_from: Collection[JobExecutionStatus],
        *,
        attempt_status: JobExecutionStatus,
        failure: str | None,
        attempt_reason: str | None,
        reason: str | None,
        error: dict[str, Any] | None = None,
        retry_at: datetime | None = None,
        notify: NotificationEvent | None = None,
    ) -> bool:
        """Give the execution ``status`` and end its attempt ``number`` (if still running), if
        the execution is in ``allowed_from`` and at that attempt; its credential stops working.
        Of writers racing (two replicas, the monitor and the job's process) exactly one wins.
        ``notify`` queues that event's notifications in the same transaction: a replica that
        stops right after the change never loses them."""
        ended = now()
        with self.engine.begin() as connection:
            won = connection.execute(
                update(job_executions)
                .where(
                    job_executions.c.id == execution_id,
                    job_executions.c.status.in_(allowed_from),
                    job_executions.c.attempt == number,
                )
                .values(
                    status=status,
                    reason=reason,
                    token_hash=None,
                    retry_at=retry_at,
                    finished_at=None if status == JobExecutionStatus.RETRYING else ended,
                    **({"error": error} if error is not None else {}),
                )
            ).rowcount
            if won:
                connection.execute(
                    update(job_execution_attempts)
                    .where(
                        job_execution_attempts.c.execution_id == execution_id,
                        job_execution_attempts.c.number == number,
                        job_execution_attempts.c.finished_at.is_(None),
                    )
                    .values(
                        status=attempt_status,
                        failure=failure,
                        reason=attempt_reason,
                        finished_at=ended,
                    )
                )
                if notify is not None:
                    _enqueue(connection, execution_id, notify)
            return bool(won)

    def set_executor_state(self, execution_id: str, state: dict[str, Any]) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(job_executions)
                .where(job_executions.c.id == execution_id)
                .values(executor_state=state)
            )

    def set_run(self, execution_id: str, run_id: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(job_executions)
                .where(job_executions.c.id == execution_id)
                .values(run_id=run_id)
            )

    def request_cancel(self, execution_id: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(job_executions)
                .where(job_executions.c.id == execution_id, job_executions.c.status.in_(ACTIVE))
                .values(cancel_requested=True)
            )

    # logs
    def append_log(self, execution_id: str, text: str) -> None:
        if not text:
            return
        with self.engine.begin() as connection:
            last = connection.execute(
                select(
                    job_execution_logs.c.seq, job_execution_logs.c.offset, job_execution_logs.c.text
                )
                .where(job_execution_logs.c.execution_id == execution_id)
                .order_by(job_execution_logs.c.seq.desc())
                .limit(1)
            ).first()
            seq, offset = (last[0] + 1, last[1] + len(last[2])) if last else (0, 0)
            connection.execute(
                insert(job_execution_logs).values(
                    execution_id=execution_id, seq=seq, offset=offset, text=text
                )
            )

    def read_log(self, execution_id: str, offset: int = 0) -> tuple[str, int]:
        """The log from character ``offset`` on, and the offset to read from next."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(job_execution_logs.c.offset, job_execution_logs.c.text)
                .where(
                    job_execution_logs.c.execution_id == execution_id,
                    # as a bigint: PostgreSQL refuses an integer parameter past 2**31 (a 500)
                    job_execution_logs.c.offset + func.length(job_execution_logs.c.text)
                    > literal(offset, BigInteger),
                )
                .order_by(job_execution_logs.c.seq)
            ).all()
        text = "".join(chunk[max(0, offset - start) :] for start, chunk in rows)
        return text, offset + len(text)

    # notifications: the outbox
    def enqueue_notifications(
        self, execution_id: str, event: NotificationEvent, only: int | None = None
    ) -> int:
        """Put the execution's notifications of ``event`` in the outbox, one per target of its
        deployment that wants it (``only``: just that target); a notification already there
        stays as it is. Returns how many were added."""
        with self.engine.begin() as connection:
            return _enqueue(connection, execution_id, event, only)

    def due_notifications(self, until: datetime, limit: int = 50) -> list[NotificationDelivery]:
        """Pending notifications whose next attempt is due by ``until``, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(job_notifications)
                .where(
                    job_notifications.c.status == NotificationStatus.PENDING,
                    job_notifications.c.next_attempt_at <= until,
                )
                .order_by(job_notifications.c.next_attempt_at, job_notifications.c.id)
                .limit(limit)
            ).mappings()
            return [NotificationDelivery.model_validate(row) for row in rows]

    def claim_notification(self, notification: NotificationDelivery, until: datetime) -> bool:
        """Take the notification for an attempt, moving its next attempt on to ``until`` (when
        it is tried again should this sender die); of replicas racing for it, one wins."""
        with self.engine.begin() as connection:
            return bool(
                connection.execute(
                    update(job_notifications)
                    .where(
                        job_notifications.c.id == notification.id,
                        job_notifications.c.status == NotificationStatus.PENDING,
                        job_notifications.c.attempts == notification.attempts,
                    )
                    .values(next_attempt_at=until, attempts=notification.attempts + 1)
                ).rowcount
            )

    def record_notification(
        self,
        notification_id: int,
        status: NotificationStatus,
        *,
        last_error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        """How the latest attempt went: sent, failed for good, or pending a next attempt."""
        with self.engine.begin() as connection:
            connection.execute(
                update(job_notifications)
                .where(job_notifications.c.id == notification_id)
                .values(
                    status=status,
                    last_error=last_error,
                    next_attempt_at=next_attempt_at,
                    sent_at=now() if status == NotificationStatus.SENT else None,
                )
            )


def _enqueue(
    connection: Connection, execution_id: str, event: NotificationEvent, only: int | None = None
) -> int:
    job_id = connection.execute(
        select(job_executions.c.job_id).where(job_executions.c.id == execution_id)
    ).scalar()
    if job_id is None:
        return 0
    queued = set(
        connection.execute(
            select(job_notifications.c.target).where(
                job_notifications.c.execution_id == execution_id,
                job_notifications.c.event == event,
            )
        ).scalars()
    )
    added = 0
    for position, target in enumerate(_targets(connection, job_id)):
        if not target.wants(event) or only not in (None, position) or position in queued:
            continue
        try:
            with connection.begin_nested():  # one each: a duplicate spoils only its own
                connection.execute(
                    insert(job_notifications).values(
                        execution_id=execution_id,
                        target=position,
                        event=event,
                        address=target.url or ", ".join(target.to or []),
                        sealed_url=target.sealed_url,
                        to=target.to,
                        status=NotificationStatus.PENDING,
                        attempts=0,
                        next_attempt_at=now(),
                        created_at=now(),
                    )
                )
            added += 1
        except IntegrityError:
            pass  # another replica enqueued it meanwhile
    return added


def _targets(connection: Connection, job_id: int) -> list[NotificationTarget]:
    found = connection.execute(
        select(deployments.c.notifications).where(deployments.c.job_id == job_id)
    ).scalar()
    return [NotificationTarget.model_validate(target) for target in found or []]
