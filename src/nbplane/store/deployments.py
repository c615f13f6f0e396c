"""The control plane's records: users and teams, jobs, versions, deployments, job executions
and their logs. Every status change is a conditional UPDATE, so replicas sharing the database
never both start, finish or schedule the same thing."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from nbplane.apis.models import ExecutionStatus
from nbplane.deployments.models import (
    DescribeCaller,
    DescribeDeployment,
    DescribeJob,
    DescribeJobExecution,
    DescribeUser,
    DescribeVersion,
    DueDeployment,
    JobExecutionPage,
    JobExecutionRecord,
    ListJobExecutionsQuery,
)
from nbplane.errors import Conflict, NotFound
from nbplane.jobs.models import DescribeRunStep
from nbplane.store.tables import (
    deployments,
    job_execution_logs,
    job_executions,
    job_run_steps,
    job_runs,
    job_versions,
    jobs,
    team_members,
    users,
)

ACTIVE = (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING)
EXECUTION_COLUMNS = [
    column
    for column in job_executions.c
    if column.name not in ("job_id", "error", "executor_state", "run_id", "resources", "timeout")
]
DEPLOYMENT_COLUMNS = [column for column in deployments.c if column.name != "job_id"]
VERSION_COLUMNS = [column for column in job_versions.c if column.name not in ("job_id", "archive")]
ADMIN = "admin"


def now() -> datetime:
    return datetime.now(UTC)


class ControlStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # users and teams
    def create_user(
        self, name: str, admin: bool = False, max_sessions: int | None = None
    ) -> DescribeUser:
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    insert(users).values(
                        name=name, admin=admin, created_at=now(), max_sessions=max_sessions
                    )
                )
        except IntegrityError:
            raise Conflict(f"a user named {name!r} exists already", field="name") from None
        return self.user(name)

    def user(self, name: str) -> DescribeUser:
        with self.engine.connect() as connection:
            row = connection.execute(select(users).where(users.c.name == name)).mappings().first()
            if row is None:
                raise NotFound(f"no user named {name!r}", field="user")
            teams = self._teams(connection, row["id"])
        return DescribeUser(
            name=row["name"],
            admin=row["admin"],
            teams=teams,
            created_at=row["created_at"],
            max_sessions=row["max_sessions"],
        )

    def set_max_sessions(self, name: str, max_sessions: int | None) -> DescribeUser:
        """The user's own limit of running sessions (None: the server's default)."""
        with self.engine.begin() as connection:
            updated = connection.execute(
                update(users).where(users.c.name == name).values(max_sessions=max_sessions)
            ).rowcount
        if not updated:
            raise NotFound(f"no user named {name!r}", field="user")
        return self.user(name)

    def list_users(self) -> list[DescribeUser]:
        with self.engine.connect() as connection:
            names = connection.execute(select(users.c.name).order_by(users.c.name)).scalars().all()
        return [self.user(name) for name in names]

    def user_id(self, name: str, create_admin: bool = False) -> int:
        """The user's id; the built-in ``admin`` user is made on first use."""
        with self.engine.connect() as connection:
            found = connection.execute(select(users.c.id).where(users.c.name == name)).scalar()
        if found is not None:
            return int(found)
        if create_admin and name == ADMIN:
            self.create_user(ADMIN, admin=True)
            return self.user_id(name)
        raise NotFound(
            f"no user named {name!r}; create it with `nbplane user create`", field="user"
        )

    def add_member(self, user: str, team: str) -> None:
        user_id = self.user_id(user)
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(team_members).values(user_id=user_id, team=team))
        except IntegrityError:
            pass  # already a member

    def remove_member(self, user: str, team: str) -> None:
        user_id = self.user_id(user)
        with self.engine.begin() as connection:
            connection.execute(
                delete(team_members).where(
                    team_members.c.user_id == user_id, team_members.c.team == team
                )
            )

    def caller(self, user_id: int | None, token: str) -> DescribeCaller:
        """Who a token speaks for; a token without a user (made before users existed) is the
        admin's."""
        if user_id is None:
            return DescribeCaller(user=ADMIN, admin=True, teams=[], token=token)
        with self.engine.connect() as connection:
            row = connection.execute(select(users).where(users.c.id == user_id)).mappings().one()
            teams = self._teams(connection, user_id)
        return DescribeCaller(user=row["name"], admin=row["admin"], teams=teams, token=token)

    @staticmethod
    def _teams(connection: Connection, user_id: int) -> list[str]:
        return list(
            connection.execute(
                select(team_members.c.team)
                .where(team_members.c.user_id == user_id)
                .order_by(team_members.c.team)
            ).scalars()
        )

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
    ) -> tuple[DescribeVersion, bool]:
        """Keep an uploaded archive; the same bytes twice are one version (False: not new)."""
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

    def save_deployment(self, job_id: int, deployment: DescribeDeployment) -> DescribeDeployment:
        values = deployment.model_dump()
        with self.engine.begin() as connection:
            updated = connection.execute(
                update(deployments).where(deployments.c.job_id == job_id).values(**values)
            ).rowcount
            if not updated:
                connection.execute(insert(deployments).values(job_id=job_id, **values))
        found = self.deployment(job_id)
        assert found is not None
        return found

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
        status: ExecutionStatus,
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
            found = []
            for row in rows:
                record = DescribeJobExecution.model_validate({**row, "job": row["name"]})
                if steps:
                    record.steps = self._steps(connection, row["id"])
                found.append(record)
        return found

    @staticmethod
    def _steps(connection: Connection, execution_id: str) -> list[DescribeRunStep]:
        rows = connection.execute(
            select(*[c for c in job_run_steps.c if c.name not in ("checkpoint", "outputs")])
            .join(job_runs, job_runs.c.id == job_run_steps.c.run_id)
            .where(job_runs.c.execution_id == execution_id)
            .order_by(job_run_steps.c.position)
        ).mappings()
        return [DescribeRunStep.model_validate(row) for row in rows]

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
            job_executions.c.status == ExecutionStatus.RUNNING,
        )
        return found[0] if found else None

    def _records(self, *where: Any) -> list[JobExecutionRecord]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(job_executions, jobs.c.team, jobs.c.name)
                .join(jobs, jobs.c.id == job_executions.c.job_id)
                .where(*where)
                .order_by(job_executions.c.created_at)
            ).mappings()
            return [JobExecutionRecord.model_validate({**row, "job": row["name"]}) for row in rows]

    def change_status(
        self,
        execution_id: str,
        status: ExecutionStatus,
        allowed_from: Collection[ExecutionStatus],
        *,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        reason: str | None = None,
        error: dict[str, Any] | None = None,
        executor_state: dict[str, Any] | None = None,
    ) -> bool:
        """Set the status, and the other values given with it, if the current status is in
        ``allowed_from``: of replicas racing for the same change, exactly one wins. Which
        change is allowed is :mod:`nbplane.deployments.lifecycle`'s to say."""
        given = {
            "started_at": started_at,
            "finished_at": finished_at,
            "reason": reason,
            "error": error,
            "executor_state": executor_state,
        }
        values = {column: value for column, value in given.items() if value is not None}
        with self.engine.begin() as connection:
            return bool(
                connection.execute(
                    update(job_executions)
                    .where(
                        job_executions.c.id == execution_id,
                        job_executions.c.status.in_(allowed_from),
                    )
                    .values(status=status, **values)
                ).rowcount
            )

    def set_token(self, execution_id: str, token_hash: str) -> None:
        """The hash of the execution's own credential (see ``execution_by_token``)."""
        with self.engine.begin() as connection:
            connection.execute(
                update(job_executions)
                .where(job_executions.c.id == execution_id)
                .values(token_hash=token_hash)
            )

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
                    job_execution_logs.c.offset + func.length(job_execution_logs.c.text) > offset,
                )
                .order_by(job_execution_logs.c.seq)
            ).all()
        text = "".join(chunk[max(0, offset - start) :] for start, chunk in rows)
        return text, offset + len(text)
