"""The deployments reconciler in-process, on :class:`nbplane.testing.FakeExecutor`: a due
schedule or a request becomes an execution, the executor is handed it, and the monitor brings
it to a final status (recorded by the job, failed by a process that ended without one,
cancelled, timed out, refused). The same flows with real processes: tests/integration/
test_control.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest

from nbplane.deployments.context import ExecutionContextService
from nbplane.deployments.executors.base import ExecutionTicket
from nbplane.deployments.models import (
    DeployJob,
    ExecuteJob,
    FinishJobExecution,
    JobExecutionStatus,
    RetryOn,
    retry_wait,
)
from nbplane.deployments.reconciler import DeploymentReconciler
from nbplane.deployments.service import DeploymentService
from nbplane.errors import Unauthorized
from nbplane.platform.metrics import Metrics
from nbplane.settings import Settings
from nbplane.store import open_store
from nbplane.testing import FakeExecutor, Plan
from tests.unit.deployed import ALICE, JOB, TEAM, deploy_fake_job


@dataclass
class Deployed:
    service: DeploymentService
    executor: FakeExecutor
    job_id: int

    def execute(self) -> str:
        return self.service.execute(ALICE, TEAM, JOB, ExecuteJob()).id

    def status(self, execution_id: str) -> tuple[JobExecutionStatus, str | None]:
        found = self.service.execution(ALICE, TEAM, JOB, execution_id)
        return found.status, found.reason


@pytest.fixture
def deployed(tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployed]:
    """A job deployed on the store, its executions run by a fake executor."""
    settings = Settings(home=tmp_path / "home", job_server_url="http://127.0.0.1:9")
    store = open_store(store_url)
    service, executor = deploy_fake_job(store, settings, tmp_path, monkeypatch)
    yield Deployed(service, executor, store.deployments.job_id(TEAM, JOB))
    store.engine.dispose()


def on_plane(
    service: DeploymentService, steps: Callable[[DeploymentReconciler], Awaitable[Any]]
) -> Any:
    """Run ``steps`` with a reconciler whose loops are not started: the test turns them."""

    async def main() -> Any:
        return await steps(DeploymentReconciler(service))

    return asyncio.run(main())


def test_an_execution_is_started_with_its_own_credential_and_kept_as_the_job_recorded(
    deployed: Deployed,
) -> None:
    execution = deployed.execute()

    async def steps(plane: DeploymentReconciler) -> None:
        await plane.watch()  # queued -> started on the executor
        assert deployed.status(execution)[0] == JobExecutionStatus.RUNNING
        await plane.watch()  # still running: nothing changes
        deployed.service.lifecycle.finish(execution, JobExecutionStatus.COMPLETED, None)
        deployed.executor.finish(deployed.executor.tickets[0], exit_code=0)
        await plane.watch()

    on_plane(deployed.service, steps)
    [ticket] = deployed.executor.tickets
    assert ticket.execution_id == execution and (ticket.team, ticket.job) == (TEAM, JOB)
    assert ticket.command[-3:] == ["job", "run-execution", execution]
    assert ticket.environment["NBPLANE_URL"] == "http://127.0.0.1:9"
    assert ticket.environment["NBPLANE_EXECUTION_TOKEN"]
    assert deployed.status(execution) == (JobExecutionStatus.COMPLETED, None)
    assert deployed.executor.stopped == []


def test_a_process_that_ends_without_a_result_fails_with_the_executors_words(
    deployed: Deployed,
) -> None:
    deployed.executor.plan(Plan.fail("OOMKilled", exit_code=137))
    execution = deployed.execute()

    async def steps(plane: DeploymentReconciler) -> None:
        await plane.watch()
        deployed.executor.say(deployed.executor.tickets[0], "Killed\n")
        await plane.watch()

    on_plane(deployed.service, steps)
    status, reason = deployed.status(execution)
    assert status == JobExecutionStatus.FAILED
    assert reason == (
        "the job's process ended (OOMKilled, exit code 137) before it recorded a result"
    )
    log, _ = deployed.service.deployments.read_log(execution, 0)
    assert log.startswith("Killed\n") and "failed: the job's process ended" in log


@pytest.mark.parametrize(
    ("stop", "status", "reason"),
    [
        ("cancel", JobExecutionStatus.CANCELLED, "cancelled"),
        ("timeout", JobExecutionStatus.TIMED_OUT, "timed out after 0.01 s"),
    ],
)
def test_a_hanging_execution_is_stopped_on_cancel_or_timeout(
    deployed: Deployed, stop: str, status: JobExecutionStatus, reason: str
) -> None:
    if stop == "timeout":
        deployed.service.deploy(ALICE, TEAM, JOB, DeployJob(timeout=0.01))
    execution = deployed.execute()

    async def steps(plane: DeploymentReconciler) -> None:
        await plane.watch()
        assert deployed.status(execution)[0] == JobExecutionStatus.RUNNING
        if stop == "cancel":
            deployed.service.lifecycle.request_cancel(execution)
        else:
            await asyncio.sleep(0.02)
        await plane.watch()

    on_plane(deployed.service, steps)
    assert deployed.status(execution) == (status, reason)
    assert [state["fake"] for state in deployed.executor.stopped] == ["fake-1"]


def test_an_execution_cancelled_while_queued_never_reaches_the_executor(
    deployed: Deployed,
) -> None:
    execution = deployed.execute()
    deployed.service.lifecycle.request_cancel(execution)
    on_plane(deployed.service, lambda plane: plane.watch())
    assert deployed.status(execution) == (
        JobExecutionStatus.CANCELLED,
        "cancelled before it started",
    )
    assert deployed.executor.tickets == []


def test_an_executor_that_refuses_fails_the_execution(deployed: Deployed) -> None:
    deployed.executor.plan(Plan.refuse("no room on the cluster"))
    execution = deployed.execute()
    on_plane(deployed.service, lambda plane: plane.watch())
    assert deployed.status(execution) == (
        JobExecutionStatus.FAILED,
        "could not start: no room on the cluster",
    )


def schedule_due_at(deployed: Deployed, due: datetime) -> None:
    """A deployment on a schedule whose next run is ``due``."""
    deployed.service.deploy(ALICE, TEAM, JOB, DeployJob(schedule="0 3 * * *", timeout=60))
    current = deployed.service.deployments.deployment(deployed.job_id)
    assert current is not None and current.next_run_at is not None
    assert deployed.service.deployments.advance_schedule(deployed.job_id, current.next_run_at, due)


def test_a_due_schedule_runs_once_and_moves_on(deployed: Deployed) -> None:
    due = (datetime.now(UTC) - timedelta(seconds=1)).replace(microsecond=0)
    schedule_due_at(deployed, due)
    deployed.service.metrics = metrics = Metrics()

    async def steps(plane: DeploymentReconciler) -> None:
        await plane.schedule_due()
        await plane.schedule_due()  # the same due time never runs twice
        await plane.watch()

    on_plane(deployed.service, steps)
    [execution] = deployed.service.deployments.active_executions()
    assert execution.started_by == "schedule"
    assert execution.scheduled_for is not None
    assert execution.scheduled_for.replace(tzinfo=UTC) == due
    assert len(deployed.executor.tickets) == 1
    lag = metrics.registry.get_sample_value
    assert lag("nbplane_schedule_lag_seconds_count") == 1  # how late it started: 1 s and more
    assert 1 <= (lag("nbplane_schedule_lag_seconds_sum") or 0) < 60
    following = deployed.service.deployments.deployment(deployed.job_id)
    assert following is not None and following.next_run_at is not None
    assert following.next_run_at > datetime.now(UTC)


def test_a_run_missed_beyond_the_grace_is_skipped(deployed: Deployed) -> None:
    grace = deployed.service.settings.schedule_missed_grace_seconds
    schedule_due_at(deployed, datetime.now(UTC) - timedelta(seconds=grace + 60))
    deployed.service.metrics = metrics = Metrics()
    on_plane(deployed.service, lambda plane: plane.schedule_due())
    assert deployed.service.deployments.active_executions() == []
    assert metrics.registry.get_sample_value("nbplane_schedule_lag_seconds_count") == 0
    following = deployed.service.deployments.deployment(deployed.job_id)
    assert following is not None and following.next_run_at is not None
    assert following.next_run_at > datetime.now(UTC)


# retries: each failed attempt is recorded, and a retry is a new attempt with a new credential


def deploy_with_retries(deployed: Deployed, retries: int, **more: Any) -> None:
    """Retries after waits short enough for a test (0.05 s, then 0.1 s...)."""
    deployed.service.deploy(
        ALICE, TEAM, JOB, DeployJob(retries=retries, **{"retry_delay": 0.05, "timeout": 60, **more})
    )


def job_reports(
    deployed: Deployed,
    ticket: ExecutionTicket,
    status: Literal[JobExecutionStatus.COMPLETED, JobExecutionStatus.FAILED],
) -> None:
    """What the job's own process does at its end: record its result with its credential
    (``POST /api/v1/execution/finish``), then exit."""
    context = ExecutionContextService(deployed.service.store, deployed.service.settings)
    identity = context.identify(ticket.environment["NBPLANE_EXECUTION_TOKEN"])
    context.finish(identity, FinishJobExecution(status=status, reason=f"the job said {status}"))
    deployed.executor.finish(ticket, exit_code=0 if status == JobExecutionStatus.COMPLETED else 1)


def attempts(deployed: Deployed, execution_id: str) -> list[tuple[int, str, str | None]]:
    found = deployed.service.execution(ALICE, TEAM, JOB, execution_id).attempts
    return [(a.number, a.status, a.failure) for a in found]


async def until_retry(deployed: Deployed, execution_id: str) -> None:
    found = deployed.service.execution(ALICE, TEAM, JOB, execution_id)
    retry_at = found.retry_at
    assert retry_at is not None, found
    await asyncio.sleep(max(0.0, (retry_at - datetime.now(UTC)).total_seconds()) + 0.01)


def test_a_failure_of_the_jobs_own_code_is_retried_with_a_new_credential(
    deployed: Deployed,
) -> None:
    deploy_with_retries(deployed, retries=2, retry_delay=0.5)
    execution = deployed.execute()
    context = ExecutionContextService(deployed.service.store, deployed.service.settings)

    async def steps(plane: DeploymentReconciler) -> None:
        await plane.watch()
        first = deployed.executor.tickets[0]
        job_reports(deployed, first, JobExecutionStatus.FAILED)
        status, reason = deployed.status(execution)
        assert status == JobExecutionStatus.RETRYING
        assert reason is not None
        assert reason.startswith("attempt 1 of 3 failed: the job said failed; attempt 2 at ")
        with pytest.raises(Unauthorized):  # the failed attempt's credential is over
            context.identify(first.environment["NBPLANE_EXECUTION_TOKEN"])
        await plane.watch()  # the retry is not due yet
        assert len(deployed.executor.tickets) == 1
        await until_retry(deployed, execution)
        await plane.watch()
        second = deployed.executor.tickets[1]
        assert (second.attempt, second.execution_id) == (2, execution)
        assert (
            second.environment["NBPLANE_EXECUTION_TOKEN"]
            != (first.environment["NBPLANE_EXECUTION_TOKEN"])
        )
        job_reports(deployed, second, JobExecutionStatus.COMPLETED)
        await plane.watch()

    on_plane(deployed.service, steps)
    assert deployed.status(execution) == (
        JobExecutionStatus.COMPLETED,
        "the job said completed (2 of 3 attempts ran)",
    )
    assert attempts(deployed, execution) == [(1, "failed", "user"), (2, "completed", None)]
    [first, second] = deployed.service.execution(ALICE, TEAM, JOB, execution).attempts
    assert first.reason == "the job said failed"
    assert first.finished_at is not None and first.finished_at <= second.started_at
    log, _ = deployed.service.deployments.read_log(execution, 0)
    assert log == ("=== nbplane: attempt 1 of 3 ===\n\n=== nbplane: attempt 2 of 3 ===\n"), (
        "each attempt opens its part of the log"
    )


def test_retry_on_platform_does_not_retry_the_jobs_own_failure(deployed: Deployed) -> None:
    deploy_with_retries(deployed, retries=2, retry_on=RetryOn.PLATFORM)
    execution = deployed.execute()

    async def steps(plane: DeploymentReconciler) -> None:
        await plane.watch()
        job_reports(deployed, deployed.executor.tickets[0], JobExecutionStatus.FAILED)
        await plane.watch()

    on_plane(deployed.service, steps)
    assert deployed.status(execution) == (
        JobExecutionStatus.FAILED,
        "the job said failed (1 of 3 attempts ran; retry_on 'platform' does not retry a "
        "failure of the job's own code)",
    )
    assert attempts(deployed, execution) == [(1, "failed", "user")]
    assert len(deployed.executor.tickets) == 1


def test_platform_failures_are_retried_until_the_attempts_run_out(deployed: Deployed) -> None:
    deploy_with_retries(deployed, retries=2, retry_on=RetryOn.PLATFORM, timeout=0.2)
    deployed.executor.plan(Plan.fail("OOMKilled", exit_code=137), Plan.refuse("no node"))
    execution = deployed.execute()

    async def steps(plane: DeploymentReconciler) -> None:
        await plane.watch()  # attempt 1: its pod is killed
        await plane.watch()
        await until_retry(deployed, execution)
        await plane.watch()  # attempt 2: could not start
        await until_retry(deployed, execution)
        await plane.watch()  # attempt 3: hangs until its timeout
        await asyncio.sleep(0.25)
        await plane.watch()

    on_plane(deployed.service, steps)
    assert attempts(deployed, execution) == [
        (1, "failed", "platform"),
        (2, "failed", "platform"),
        (3, "timed_out", "platform"),
    ]
    assert deployed.status(execution) == (
        JobExecutionStatus.TIMED_OUT,
        "timed out after 0.2 s (3 of 3 attempts ran)",
    )
    found = deployed.service.execution(ALICE, TEAM, JOB, execution).attempts
    assert [a.reason for a in found][:2] == [
        "the job's process ended (OOMKilled, exit code 137) before it recorded a result",
        "could not start: no node",
    ]
    assert [ticket.attempt for ticket in deployed.executor.tickets] == [1, 3]


def test_each_wait_doubles_the_one_before(deployed: Deployed) -> None:
    deploy_with_retries(deployed, retries=3)
    deployed.executor.plan(*[Plan.fail("node gone", exit_code=1)] * 3)
    execution = deployed.execute()
    waits = []

    async def steps(plane: DeploymentReconciler) -> None:
        for _ in range(2):
            await plane.watch()
            await plane.watch()
            found = deployed.service.execution(ALICE, TEAM, JOB, execution)
            assert found.retry_at is not None and found.attempts[-1].finished_at is not None
            waits.append((found.retry_at - found.attempts[-1].finished_at).total_seconds())
            await until_retry(deployed, execution)

    on_plane(deployed.service, steps)
    assert waits == [pytest.approx(0.05, abs=0.01), pytest.approx(0.1, abs=0.01)]
    assert retry_wait(60, 1) == 60 and retry_wait(60, 7) == 3600 and retry_wait(60, 11) == 3600


def test_a_cancel_while_waiting_to_retry_ends_it_cancelled(deployed: Deployed) -> None:
    deploy_with_retries(deployed, retries=2)
    deployed.executor.plan(Plan.fail("node gone", exit_code=1))
    execution = deployed.execute()

    async def steps(plane: DeploymentReconciler) -> None:
        await plane.watch()
        await plane.watch()
        assert deployed.status(execution)[0] == JobExecutionStatus.RETRYING
        deployed.service.lifecycle.request_cancel(execution)
        await until_retry(deployed, execution)
        await plane.watch()

    on_plane(deployed.service, steps)
    assert deployed.status(execution) == (
        JobExecutionStatus.CANCELLED,
        "cancelled while waiting to retry (1 of 3 attempts ran)",
    )
    assert len(deployed.executor.tickets) == 1
    assert attempts(deployed, execution) == [(1, "failed", "platform")]


def test_two_replicas_never_start_the_same_attempt(deployed: Deployed) -> None:
    deploy_with_retries(deployed, retries=1)
    deployed.executor.plan(Plan.fail("node gone", exit_code=1))
    execution = deployed.execute()

    async def steps(plane: DeploymentReconciler) -> None:
        other = DeploymentReconciler(deployed.service)
        await asyncio.gather(plane.watch(), other.watch())
        await asyncio.gather(plane.watch(), other.watch())
        await until_retry(deployed, execution)
        await asyncio.gather(plane.watch(), other.watch())

    on_plane(deployed.service, steps)
    assert [ticket.attempt for ticket in deployed.executor.tickets] == [1, 2]
    assert attempts(deployed, execution) == [(1, "failed", "platform"), (2, "running", None)]
