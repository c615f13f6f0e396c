"""The deployments' operations behind the API, with access checked on every one: a caller
sees only their teams' jobs, and another team's job is "not found", never "forbidden"."""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from nbplane._time import now
from nbplane.auth.models import DescribeCaller
from nbplane.deployments.lifecycle import JobExecutionLifecycle
from nbplane.deployments.models import (
    CreateJob,
    CreateNotification,
    DeployJob,
    DescribeDeployment,
    DescribeJob,
    DescribeJobExecution,
    DescribeSecrets,
    DescribeVersion,
    ExecuteJob,
    JobExecutionPage,
    JobExecutionStatus,
    ListJobExecutionsQuery,
    NotificationTarget,
    UpdateDeployment,
    redact_url,
)
from nbplane.deployments.notifications import refused_webhook
from nbplane.deployments.schedule import next_fire, zone
from nbplane.errors import Conflict, InvalidInput, NotFound
from nbplane.jobs.archive import inspect, unpack, version_id
from nbplane.jobs.backend import StoreJobState
from nbplane.platform.metrics import UNOBSERVED, Metrics
from nbplane.platform.names import check_name
from nbplane.settings import Settings
from nbplane.store import Store


class DeploymentService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        executor: str,
        server_url: str | None = None,
        metrics: Metrics = UNOBSERVED,
    ) -> None:
        self.store, self.settings, self.executor = store, settings, executor
        self.server_url = settings.job_server_url or settings.session_public_url or server_url
        """Where deployed jobs reach this server (their only channel to nbplane)."""
        self.deployments = store.deployments
        self.metrics = metrics
        self.lifecycle = JobExecutionLifecycle(self.deployments, metrics)
        self.state = StoreJobState(store, settings)
        self.on_change: list[Any] = []
        """Callbacks run after a deployment or execution changes (wake the scheduler, monitor)."""

    def _changed(self) -> None:
        for callback in self.on_change:
            callback()

    def _job_id(self, caller: DescribeCaller, team: str, job: str) -> int:
        if not caller.can_use(team):
            raise NotFound(f"no job {job!r} in team {team}", field="job", team=team, job=job)
        return self.deployments.job_id(team, job)

    def _team(self, caller: DescribeCaller, team: str) -> str:
        try:
            check_name(team, "team name")
        except ValueError as exc:
            raise InvalidInput(str(exc), field="team") from None
        if not caller.can_use(team):
            raise NotFound(f"no team {team!r} of yours", field="team", team=team)
        return team

    # jobs
    def create_job(self, caller: DescribeCaller, team: str, body: CreateJob) -> DescribeJob:
        return self.deployments.create_job(
            self._team(caller, team), body.name, body.description, caller.user
        )

    def list_jobs(self, caller: DescribeCaller, team: str) -> list[DescribeJob]:
        return self.deployments.list_jobs(self._team(caller, team))

    def job(self, caller: DescribeCaller, team: str, job: str) -> DescribeJob:
        self._job_id(caller, team, job)
        return self.deployments.job(team, job)

    def delete_job(self, caller: DescribeCaller, team: str, job: str, force: bool) -> None:
        """Delete a job; running executions are cancelled first (with ``force``) and end with a
        final status before the job and its records go."""
        job_id = self._job_id(caller, team, job)
        active = self._active(job_id)
        if active and not force:
            raise Conflict(
                f"job {job!r} has {len(active)} execution(s) queued or running; cancel them, "
                "or delete with force to cancel them first",
                field="force",
            )
        self.deployments.delete_deployment(job_id)
        for execution_id in active:
            self.lifecycle.request_cancel(execution_id)
        self._changed()
        deadline = time.monotonic() + 30
        while active and time.monotonic() < deadline:
            time.sleep(0.1)
            active = self._active(job_id)
        if active:
            raise Conflict(
                f"job {job!r}: {len(active)} execution(s) did not stop within 30 s; try again",
                field="force",
            )
        self.deployments.delete_job(job_id)

    def _active(self, job_id: int) -> list[str]:
        """The ids of the job's queued and running executions."""
        return [
            execution.id
            for execution in self.deployments.active_executions()
            if execution.job_id == job_id
        ]

    # versions
    def upload(
        self, caller: DescribeCaller, team: str, job: str, archive: bytes
    ) -> tuple[DescribeVersion, bool]:
        job_id = self._job_id(caller, team, job)
        if not archive:
            raise InvalidInput(
                "the upload is empty; send the zip of `nbplane job export`", field="body"
            )
        steps, config = inspect(archive)
        return self.deployments.add_version(
            job_id, version_id(archive), archive, steps, caller.user, retention=config.retention
        )

    def versions(self, caller: DescribeCaller, team: str, job: str) -> list[DescribeVersion]:
        return self.deployments.versions(self._job_id(caller, team, job))

    def archive(self, caller: DescribeCaller, team: str, job: str, version: str) -> bytes:
        job_id = self._job_id(caller, team, job)
        return self.deployments.archive(job_id, self.deployments.version(job_id, version).id)

    # deployments
    def deploy(
        self, caller: DescribeCaller, team: str, job: str, body: DeployJob
    ) -> DescribeDeployment:
        job_id = self._job_id(caller, team, job)
        return self._save(job_id, body, self._targets(body.notifications), caller)

    def update_deployment(
        self, caller: DescribeCaller, team: str, job: str, body: UpdateDeployment
    ) -> DescribeDeployment:
        job_id = self._job_id(caller, team, job)
        current = self.deployments.deployment(job_id)
        if current is None:
            raise NotFound(f"job {job!r} is not deployed", field="deployment")
        kept = current.model_dump(include=set(DeployJob.model_fields) - {"notifications"})
        changes = body.model_dump(exclude_unset=True, exclude={"notifications"})
        wanted = DeployJob.model_validate({**kept, **changes})
        targets = (
            self._targets(body.notifications)
            if body.notifications is not None
            else self.deployments.notification_targets(job_id)
        )
        return self._save(job_id, wanted, targets, caller)

    def _targets(self, notifications: list[CreateNotification]) -> list[NotificationTarget]:
        """The targets as kept: a webhook's URL checked and sealed, only its host shown."""
        targets = []
        for position, wanted in enumerate(notifications):
            refused = wanted.url and refused_webhook(
                wanted.url, self.settings.notify_allow_private_hosts
            )
            if refused:
                raise InvalidInput(refused, field=f"notifications[{position}].url")
            if wanted.to is not None and not self.settings.smtp_host:
                raise InvalidInput(
                    "this server sends no email (NBPLANE_SMTP_HOST is not set); use a webhook",
                    field=f"notifications[{position}].to",
                )
            sealed = self.state.box.seal({"url": wanted.url}).decode() if wanted.url else None
            targets.append(
                NotificationTarget(
                    url=redact_url(wanted.url) if wanted.url else None,
                    to=wanted.to,
                    events=wanted.events,
                    late_minutes=wanted.late_minutes,
                    sealed_url=sealed,
                )
            )
        return targets

    def _save(
        self,
        job_id: int,
        wanted: DeployJob,
        targets: list[NotificationTarget],
        caller: DescribeCaller,
    ) -> DescribeDeployment:
        version = self.deployments.version(job_id, wanted.version).id
        zone(wanted.timezone)
        schedule = wanted.schedule or None
        next_run_at = None
        if schedule:  # checked even when disabled: a bad expression is refused now
            next_run_at = next_fire(schedule, wanted.timezone, now())
        saved = self.deployments.save_deployment(
            job_id,
            DescribeDeployment(
                version=version,
                schedule=schedule,
                timezone=wanted.timezone,
                enabled=wanted.enabled,
                arguments=wanted.arguments,
                resources=wanted.resources,
                timeout=wanted.timeout,
                retries=wanted.retries,
                retry_delay=wanted.retry_delay,
                retry_on=wanted.retry_on,
                reason=wanted.reason,
                executor=self.executor,
                next_run_at=next_run_at if wanted.enabled else None,
                deployed_at=now(),
                deployed_by=caller.user,
            ),
            targets,
        )
        self._changed()
        return saved

    def undeploy(self, caller: DescribeCaller, team: str, job: str) -> None:
        if not self.deployments.delete_deployment(self._job_id(caller, team, job)):
            raise NotFound(f"job {job!r} is not deployed", field="deployment")
        self._changed()

    # executions
    def execute(
        self, caller: DescribeCaller, team: str, job: str, body: ExecuteJob
    ) -> DescribeJobExecution:
        job_id = self._job_id(caller, team, job)
        deployment = self.deployments.deployment(job_id)
        if deployment is None:
            raise Conflict(
                f"job {job!r} is not deployed; deploy it first (`nbplane job deploy DIR`)",
                field="deployment",
            )
        arguments = deployment.arguments if body.arguments is None else body.arguments
        execution_id = self.start_execution(job_id, deployment, f"user:{caller.user}", arguments)
        assert execution_id is not None
        return self.deployments.execution(job_id, execution_id)

    def start_execution(
        self,
        job_id: int,
        deployment: DescribeDeployment,
        started_by: str,
        arguments: dict[str, Any],
        scheduled_for: datetime | None = None,
    ) -> str | None:
        """Queue an execution of the deployed version; None if that schedule slot ran already."""
        created = self.lifecycle.queue(job_id, deployment, started_by, arguments, scheduled_for)
        self._changed()
        return created

    def executions(
        self, caller: DescribeCaller, team: str, job: str, query: ListJobExecutionsQuery
    ) -> JobExecutionPage:
        return self.deployments.page_executions(self._job_id(caller, team, job), query)

    def recent_executions(
        self, caller: DescribeCaller, query: ListJobExecutionsQuery
    ) -> JobExecutionPage:
        """Executions of the jobs of all the caller's teams (an admin's: of every team)."""
        return self.deployments.page_team_executions(None if caller.admin else caller.teams, query)

    def execution(
        self, caller: DescribeCaller, team: str, job: str, execution_id: str
    ) -> DescribeJobExecution:
        return self.deployments.execution(self._job_id(caller, team, job), execution_id)

    def wait(
        self, caller: DescribeCaller, team: str, job: str, execution_id: str, seconds: float
    ) -> DescribeJobExecution:
        deadline = time.monotonic() + seconds
        while True:
            record = self.execution(caller, team, job, execution_id)
            if record.status.final or time.monotonic() >= deadline:
                return record
            time.sleep(0.1)

    def cancel(
        self, caller: DescribeCaller, team: str, job: str, execution_id: str
    ) -> DescribeJobExecution:
        record = self.execution(caller, team, job, execution_id)
        if record.status.final:
            raise Conflict(
                f"execution {execution_id} already ended as {record.status}",
                field="execution_id",
            )
        self.lifecycle.request_cancel(execution_id)
        self._changed()
        return self.wait(caller, team, job, execution_id, 10)

    def logs(
        self, caller: DescribeCaller, team: str, job: str, execution_id: str, offset: int
    ) -> tuple[str, int, bool]:
        """Log text from ``offset``, the next offset, and whether the execution has ended."""
        record = self.execution(caller, team, job, execution_id)
        text, following = self.deployments.read_log(execution_id, offset)
        return text, following, record.status.final

    def html(self, caller: DescribeCaller, team: str, job: str, execution_id: str) -> str:
        """The execution's run as one page (as `nbplane job show-run --html` draws a local
        one): its steps, executed notebooks and the version's step files with outputs. One
        that ended before its first step finished is a page of why it ended alone."""
        from nbplane.jobs.history import run_failure, run_page  # nbformat, nbconvert: a page
        from nbplane.notebooks.pages import Failure, notebook_page

        record = self.execution(caller, team, job, execution_id)
        run = self.store.execution_run(execution_id)
        titles = {
            JobExecutionStatus.FAILED: "Failed",
            JobExecutionStatus.TIMED_OUT: "Timed out",
            JobExecutionStatus.CANCELLED: "Cancelled",
        }
        if run is None:
            if record.status not in titles:
                raise NotFound(
                    f"execution {execution_id} ran no step yet ({record.status}): no page to show",
                    field="execution_id",
                )
            import nbformat

            ended = Failure(titles[record.status], error=record.reason)
            return notebook_page(nbformat.v4.new_notebook(), ended, f"{job} {execution_id}")
        archive = self.deployments.archive(self._job_id(caller, team, job), record.version)
        with tempfile.TemporaryDirectory(prefix="nbplane-page-") as scratch:
            unpack(archive, Path(scratch))
            failure = run_failure(run)
            if record.status in titles:  # how the execution ended, where its run says
                ended = Failure(titles[record.status], error=record.reason)
                if failure is None:
                    failure = ended
                elif record.status != JobExecutionStatus.FAILED:  # the time up, a cancel
                    failure = replace(failure, title=ended.title, error=ended.error)
            return run_page(Path(scratch), run, self.store.run_notebooks(run.id), failure)

    # properties and secrets (the same records `job_input` reads)
    def properties(self, caller: DescribeCaller, team: str, job: str) -> dict[str, Any]:
        self._job_id(caller, team, job)
        return self.state.get_properties(f"{team}/{job}")

    def set_properties(
        self, caller: DescribeCaller, team: str, job: str, values: dict[str, Any]
    ) -> dict[str, Any]:
        current = self.properties(caller, team, job)
        merged = _merge(current, values)
        self.state.set_properties(f"{team}/{job}", merged)
        return merged

    def secrets(self, caller: DescribeCaller, team: str, job: str) -> DescribeSecrets:
        self._job_id(caller, team, job)
        return DescribeSecrets(names=sorted(self.state.get_secrets(f"{team}/{job}")))

    def set_secrets(
        self, caller: DescribeCaller, team: str, job: str, values: dict[str, Any]
    ) -> DescribeSecrets:
        self._job_id(caller, team, job)
        key = f"{team}/{job}"
        merged = _merge(self.state.get_secrets(key), values)
        self.state.set_secrets(key, merged)
        return DescribeSecrets(names=sorted(merged))


def _merge(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
