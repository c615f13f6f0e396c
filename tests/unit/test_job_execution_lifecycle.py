"""The job execution lifecycle against a real store, in-process: which status changes it
allows, that each happens once, and the records the store gives the reconciler."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nbplane.deployments.lifecycle import JobExecutionLifecycle, allowed_from
from nbplane.deployments.models import (
    DescribeDeployment,
    FailureKind,
    JobExecutionRecord,
    JobExecutionStatus,
)
from nbplane.platform.metrics import Metrics
from nbplane.store import Store, open_store
from tests.conftest import BACKENDS, database_url

DUE = datetime(2030, 1, 1, 6, 0, tzinfo=UTC)
PLATFORM = FailureKind.PLATFORM


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with database_url(request.param, tmp_path) as url:
        store = open_store(url)
        yield store
        store.engine.dispose()


@pytest.fixture
def job_id(store: Store) -> int:
    store.deployments.create_job("sales", "daily", None, "alice")
    job_id = store.deployments.job_id("sales", "daily")
    store.deployments.save_deployment(job_id, deployment(), [])
    return job_id


def deployment() -> DescribeDeployment:
    return DescribeDeployment(
        version="v1",
        schedule="0 6 * * *",
        timezone="UTC",
        enabled=True,
        arguments={"day": 1},
        resources={"cpu": "1"},
        timeout=60,
        executor="local",
        next_run_at=DUE,
        deployed_at=DUE - timedelta(days=1),
    )


def test_an_execution_runs_once_and_ends_once(store: Store, job_id: int) -> None:
    lifecycle = JobExecutionLifecycle(store.deployments)
    execution_id = lifecycle.queue(job_id, deployment(), "user:alice", {"day": 2})
    assert execution_id is not None
    assert lifecycle.start(execution_id, 1, {"pid": 1}, "hash-1")
    assert not lifecycle.start(execution_id, 1, {"pid": 2}, "hash-2")  # another replica lost
    assert lifecycle.finish(execution_id, JobExecutionStatus.COMPLETED, None)
    assert not lifecycle.finish(execution_id, JobExecutionStatus.FAILED, "too late")
    record = store.deployments.execution_record(execution_id)
    assert isinstance(record, JobExecutionRecord)
    assert (record.status, record.reason, record.executor_state) == (
        JobExecutionStatus.COMPLETED,
        None,
        {"pid": 1},
    )
    assert (record.team, record.job, record.job_id, record.arguments) == (
        "sales",
        "daily",
        job_id,
        {"day": 2},
    )
    assert record.started_at is not None and record.finished_at is not None
    assert store.deployments.active_executions() == []


def test_a_queued_execution_is_cancelled_or_failed_but_never_completes(
    store: Store, job_id: int
) -> None:
    lifecycle = JobExecutionLifecycle(store.deployments)
    execution_id = lifecycle.queue(job_id, deployment(), "user:alice", {})
    assert execution_id is not None
    assert not lifecycle.finish(execution_id, JobExecutionStatus.COMPLETED, None)
    assert not lifecycle.finish(execution_id, JobExecutionStatus.TIMED_OUT, None)
    lifecycle.request_cancel(execution_id)
    [active] = store.deployments.active_executions()
    assert (active.id, active.status, active.cancel_requested) == (
        execution_id,
        JobExecutionStatus.QUEUED,
        True,
    )
    assert lifecycle.finish(
        execution_id, JobExecutionStatus.CANCELLED, "cancelled before it started"
    )
    assert store.deployments.execution_record(execution_id).status == JobExecutionStatus.CANCELLED


def test_a_schedule_slot_queues_one_execution(store: Store, job_id: int) -> None:
    lifecycle = JobExecutionLifecycle(store.deployments)
    first = lifecycle.queue(job_id, deployment(), "schedule", {}, scheduled_for=DUE)
    assert first is not None
    assert lifecycle.queue(job_id, deployment(), "schedule", {}, scheduled_for=DUE) is None


def test_the_transitions_are_one_table() -> None:
    assert allowed_from(JobExecutionStatus.RUNNING) == {
        JobExecutionStatus.QUEUED,
        JobExecutionStatus.RETRYING,
    }
    assert allowed_from(JobExecutionStatus.COMPLETED) == {JobExecutionStatus.RUNNING}
    assert allowed_from(JobExecutionStatus.RETRYING) == {JobExecutionStatus.RUNNING}
    assert allowed_from(JobExecutionStatus.CANCELLED) == {
        JobExecutionStatus.QUEUED,
        JobExecutionStatus.RUNNING,
        JobExecutionStatus.RETRYING,
    }
    with pytest.raises(ValueError):
        allowed_from(JobExecutionStatus.QUEUED)


def test_due_deployments_come_with_their_job_and_schedule(store: Store, job_id: int) -> None:
    assert store.deployments.due(DUE - timedelta(seconds=1)) == []
    [due] = store.deployments.due(DUE)
    assert (due.job_id, due.team, due.job) == (job_id, "sales", "daily")
    read = due.deployment.next_run_at
    assert read == DUE
    # the compare-and-set the scheduler does with the time it read: one replica wins
    assert store.deployments.advance_schedule(job_id, read, DUE + timedelta(days=1))
    assert not store.deployments.advance_schedule(job_id, read, DUE + timedelta(days=1))


def test_final_statuses_are_counted_once_and_a_retried_attempt_not(
    store: Store, job_id: int
) -> None:
    metrics = Metrics()
    lifecycle = JobExecutionLifecycle(store.deployments, metrics)
    retried = deployment().model_copy(update={"retries": 1, "retry_delay": 1})
    execution_id = lifecycle.queue(job_id, retried, "user:alice", {})
    assert execution_id is not None and lifecycle.start(execution_id, 1, {}, "hash-1")
    failed = JobExecutionStatus.FAILED
    ending = lifecycle.finish(execution_id, failed, "pod lost", attempt=1, failure=PLATFORM)
    assert ending is not None and ending.status == JobExecutionStatus.RETRYING
    value = metrics.registry.get_sample_value
    assert value("nbplane_job_executions_total", {"status": "failed"}) is None
    assert lifecycle.start(execution_id, 2, {}, "hash-2")
    assert lifecycle.finish(execution_id, JobExecutionStatus.COMPLETED, None, attempt=2)
    assert not lifecycle.finish(execution_id, failed, "too late", attempt=2)
    assert value("nbplane_job_executions_total", {"status": "completed"}) == 1
    assert value("nbplane_job_executions_total", {"status": "failed"}) is None
