"""Retention in the store, on SQLite and PostgreSQL: how many runs and days are kept, outputs of
older runs, the checkpoints resume needs, deployed jobs' executions and their logs (never one
that has not ended), runs of deleted jobs, two replicas pruning at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from nbplane.deployments.models import DescribeDeployment, JobExecutionStatus
from nbplane.jobs.models import (
    CreateRun,
    DescribeRetention,
    DescribeRunStep,
    RunStatus,
    StepStatus,
)
from nbplane.store import Store, open_store
from nbplane.store import retention as store_retention
from nbplane.store import runs as store_runs

JOB = "/jobs/etl"
CHECKPOINT = b"c" * 50_000


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def keep(runs: int = 0, days: float = 0, outputs: int = 0) -> DescribeRetention:
    return DescribeRetention(keep_runs=runs, keep_days=days, keep_outputs=outputs)


def record_run(
    store: Store,
    steps: dict[str, StepStatus],
    job_dir: str = JOB,
    execution_id: str | None = None,
    finish: bool = True,
) -> int:
    """A run whose steps ended as given; a succeeded step has outputs and a checkpoint."""
    run = store.create_run(
        CreateRun(
            job_dir=job_dir,
            job_name="etl",
            arguments={},
            db_url="sqlite://",
            resumed=False,
            plan=[],
        ),
        execution_id,
    )
    for position, (name, status) in enumerate(steps.items()):
        succeeded = status == StepStatus.SUCCEEDED
        step = DescribeRunStep(
            position=position,
            name=name,
            kind="python-cell",
            file=name.split("#")[0],
            status=status,
            code_hash="code",
            chain_hash=f"chain-{name}",
            outputs=[{"output_type": "stream", "name": "stdout", "text": "hi\n"}] * succeeded,
        )
        store.add_step(run.id, step, CHECKPOINT if succeeded else None)
    if finish:
        store.finish_run(run.id, RunStatus.SUCCEEDED, None, {"10_a.ipynb": "{}"})
    return run.id


FULL = {"10_a.ipynb#1": StepStatus.SUCCEEDED, "10_a.ipynb#2": StepStatus.SUCCEEDED}


def runs_of(store: Store, job_dir: str = JOB) -> list[int]:
    return sorted(run.id for run in store.list_runs(job_dir, limit=1000))


def checkpoints(store: Store) -> dict[int, list[str]]:
    """Run id -> the names of its steps that still have a checkpoint."""
    with store.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT run_id, name FROM job_run_steps WHERE checkpoint IS NOT NULL")
        ).all()
    found: dict[int, list[str]] = {}
    for run_id, name in rows:
        found.setdefault(run_id, []).append(name)
    return {run_id: sorted(names) for run_id, names in found.items()}


def notebooks_of(store: Store) -> list[int]:
    with store.engine.connect() as connection:
        return sorted(
            connection.execute(text("SELECT DISTINCT run_id FROM job_run_notebooks")).scalars()
        )


def test_the_newest_runs_are_kept_and_a_dry_run_removes_nothing(store: Store) -> None:
    ids = [record_run(store, FULL) for _ in range(5)]
    other = record_run(store, FULL, job_dir="/jobs/other")

    planned = store.retention.prune_runs(JOB, keep(runs=2), dry_run=True)
    assert runs_of(store) == ids, "a dry run changes nothing"
    pruned = store.retention.prune_runs(JOB, keep(runs=2))

    assert pruned.runs == planned.runs == ids[:3]
    assert (pruned.steps, pruned.notebooks) == (6, 3) == (planned.steps, planned.notebooks)
    # 3 deleted runs' 6, and those of the kept older run: only the newest run's are needed
    assert pruned.checkpoints == planned.checkpoints == 8
    assert runs_of(store) == ids[3:]
    assert checkpoints(store) == {ids[4]: ["10_a.ipynb#1", "10_a.ipynb#2"], other: FULL_NAMES}
    assert runs_of(store, "/jobs/other") == [other], "another job's runs are its own"
    again = store.retention.prune_runs(JOB, keep(runs=2))
    assert not again.removed_anything


FULL_NAMES = sorted(FULL)


def test_runs_older_than_the_days_go_but_never_the_newest(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=40)
    monkeypatch.setattr(store_runs, "now", lambda: long_ago)
    old = [record_run(store, FULL) for _ in range(3)]
    monkeypatch.undo()
    new = [record_run(store, FULL) for _ in range(2)]

    assert store.retention.prune_runs(JOB, keep(days=30)).runs == old
    assert runs_of(store) == new

    # a month later on our clock: every run is old, yet the job keeps its newest
    later = datetime.now(UTC) + timedelta(days=31)
    monkeypatch.setattr(store_retention, "now", lambda: later)
    assert store.retention.prune_runs(JOB, keep(days=30)).runs == new[:1]
    assert runs_of(store) == new[1:]


def test_older_runs_keep_their_record_without_notebooks_and_outputs(store: Store) -> None:
    ids = [record_run(store, FULL) for _ in range(4)]

    pruned = store.retention.prune_runs(JOB, keep(runs=0, outputs=1))

    assert (pruned.runs, pruned.notebooks, pruned.outputs) == ([], 3, 6)
    assert runs_of(store) == ids and notebooks_of(store) == ids[-1:]
    by_id = {run.id: run for run in store.list_runs(JOB)}
    assert all(step.outputs == [] for run in ids[:3] for step in by_id[run].steps)
    assert all(step.outputs for step in by_id[ids[-1]].steps)


def test_the_checkpoints_resume_needs_are_kept_with_their_runs(store: Store) -> None:
    """Step 1 last ran in run 1 (resumes since skipped it), step 2 last ran in run 3 and
    failed: resume needs run 1's step 1 (its namespace), and run 3 is the newest."""
    first = record_run(store, FULL)
    second = record_run(
        store, {"10_a.ipynb#1": StepStatus.SKIPPED, "10_a.ipynb#2": StepStatus.SUCCEEDED}
    )
    third = record_run(
        store, {"10_a.ipynb#1": StepStatus.SKIPPED, "10_a.ipynb#2": StepStatus.FAILED}
    )

    pruned = store.retention.prune_runs(JOB, keep(runs=1))

    assert pruned.runs == [second], "run 1 holds step 1's newest execution"
    assert runs_of(store) == [first, third]
    assert checkpoints(store) == {first: ["10_a.ipynb#1"]}
    assert pruned.checkpoints == 2  # run 2's, and run 1's step 2 (superseded by run 3's)
    needed = next(
        e.step for e in store.job_history(JOB).executions if e.step.name == "10_a.ipynb#1"
    )
    assert needed.run_id == first
    assert store.load_checkpoint(needed.id or 0) == CHECKPOINT


def test_a_running_run_is_never_pruned(store: Store) -> None:
    running = record_run(store, FULL, finish=False)  # our own process: alive, not abandoned
    ended = [record_run(store, FULL) for _ in range(3)]

    pruned = store.retention.prune_runs(JOB, keep(runs=1, outputs=1))

    assert pruned.runs == ended[:2]
    assert runs_of(store) == [running, ended[2]]
    assert checkpoints(store)[running] == FULL_NAMES, "its checkpoints stay too"


# deployed jobs
TEAM_JOB = ("sales", "daily")


def deployed_job(store: Store, retention: dict[str, float] | None = None) -> int:
    deployments = store.deployments
    deployments.create_job(*TEAM_JOB, None, "alice")
    job_id = deployments.job_id(*TEAM_JOB)
    deployments.add_version(job_id, "v1", b"zip", ["a"], "alice", retention=retention)
    deployments.save_deployment(
        job_id,
        DescribeDeployment(
            version="v1",
            schedule=None,
            timezone="UTC",
            enabled=True,
            arguments={},
            resources={},
            timeout=60,
            executor="local",
            deployed_at=datetime.now(UTC),
        ),
        [],
    )
    return job_id


def execution(store: Store, job_id: int, status: JobExecutionStatus, number: int) -> str:
    """An execution with its run and a log; ``number`` orders them (higher: newer)."""
    deployments = store.deployments
    execution_id = f"00000000-0000-0000-0000-{number:012d}"
    deployment = deployments.deployment(job_id)
    assert deployment is not None
    deployments.create_execution(
        job_id, execution_id, JobExecutionStatus.QUEUED, deployment, "schedule", {}, None
    )
    with store.engine.begin() as connection:  # one second apart, whatever the clock's grain
        connection.execute(
            text("UPDATE job_executions SET created_at = :at WHERE id = :id"),
            {
                "at": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=number),
                "id": execution_id,
            },
        )
    if status != JobExecutionStatus.QUEUED:
        deployments.start_attempt(
            execution_id, 1, [JobExecutionStatus.QUEUED], {}, f"hash-of-{execution_id}"
        )
        deployments.set_run(execution_id, record_run(store, FULL, f"/tmp/x{number}", execution_id))
        deployments.append_log(execution_id, "x" * 10)
    if status.final:
        deployments.end_attempt(
            execution_id,
            1,
            status,
            [JobExecutionStatus.RUNNING],
            attempt_status=status,
            failure=None,
            attempt_reason=None,
            reason=None,
        )
    return execution_id


def executions_of(store: Store, job_id: int) -> list[str]:
    with store.engine.connect() as connection:
        return sorted(
            connection.execute(
                text("SELECT id FROM job_executions WHERE job_id = :job"), {"job": job_id}
            ).scalars()
        )


def logs_of(store: Store) -> list[str]:
    with store.engine.connect() as connection:
        return sorted(
            connection.execute(
                text("SELECT DISTINCT execution_id FROM job_execution_logs")
            ).scalars()
        )


def test_old_executions_go_with_their_runs_and_logs_never_one_not_ended(store: Store) -> None:
    job_id = deployed_job(store)
    statuses = [
        JobExecutionStatus.RUNNING,  # the oldest, still running
        JobExecutionStatus.FAILED,
        JobExecutionStatus.COMPLETED,
        JobExecutionStatus.CANCELLED,
        JobExecutionStatus.COMPLETED,
        JobExecutionStatus.QUEUED,  # the newest, not started
    ]
    ids = [execution(store, job_id, status, number) for number, status in enumerate(statuses)]
    [job] = store.retention.deployed_jobs()

    pruned = store.retention.prune_executions(job, keep(runs=3, outputs=2))

    assert pruned.executions == [ids[1], ids[2]]
    assert len(pruned.runs) == 2 and pruned.steps == 4 and pruned.logs == 3
    assert pruned.log_characters == 30
    assert executions_of(store, job_id) == sorted([ids[0], ids[3], ids[4], ids[5]])
    assert logs_of(store) == sorted([ids[0], ids[4]]), "the newest ended one keeps its log"
    with store.engine.connect() as connection:
        runs = connection.execute(text("SELECT execution_id FROM job_runs")).scalars()
        assert sorted(runs) == sorted([ids[0], ids[3], ids[4]])


def test_a_deployed_jobs_retention_is_its_deployed_versions(store: Store) -> None:
    job_id = deployed_job(store, {"keep_runs": 1})
    [job] = store.retention.deployed_jobs()
    assert (job.id, job.key, job.retention) == (job_id, "sales/daily", {"keep_runs": 1})
    store.deployments.delete_deployment(job_id)
    assert store.retention.deployed_jobs()[0].retention == {}, "undeployed: the defaults"


def test_runs_of_a_deleted_jobs_executions_are_pruned(store: Store) -> None:
    job_id = deployed_job(store)
    ids = [execution(store, job_id, JobExecutionStatus.COMPLETED, n) for n in range(2)]
    local = record_run(store, FULL)
    store.deployments.delete_job(job_id)

    pruned = store.retention.prune_orphans()

    assert pruned.executions == ids and len(pruned.runs) == 2
    assert runs_of(store) == [local], "runs of this machine have no execution"
    assert not store.retention.prune_orphans().removed_anything


def test_two_replicas_pruning_at_once_remove_each_row_once(
    store_url: str, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_retention, "BATCH", 3)  # many batches, to interleave
    ids = [record_run(store, FULL) for _ in range(20)]
    replicas = [open_store(store_url) for _ in range(2)]
    results: list[Any] = []
    start = threading.Barrier(2)

    def prune(replica: Store) -> None:
        start.wait()
        results.append(replica.retention.prune_runs(JOB, keep(runs=2)))

    threads = [threading.Thread(target=prune, args=(replica,)) for replica in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for replica in replicas:
        replica.close()

    assert len(results) == 2, "neither failed"
    assert sorted(results[0].runs + results[1].runs) == ids[:18]
    assert results[0].steps + results[1].steps == 36
    assert runs_of(store) == ids[18:]


def test_sqlite_gives_the_space_back(tmp_path: Any) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'nbplane.db'}")
    try:
        for _ in range(10):
            record_run(store, FULL)
        with store.engine.connect() as connection:
            before = connection.execute(text("PRAGMA page_count")).scalar_one()
        store.retention.prune_runs(JOB, keep(runs=1))
        with store.engine.connect() as connection:
            after = connection.execute(text("PRAGMA page_count")).scalar_one()
            free = connection.execute(text("PRAGMA freelist_count")).scalar_one()
    finally:
        store.close()
    assert free == 0 and after < before / 3
