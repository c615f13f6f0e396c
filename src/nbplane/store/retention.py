"""Pruning job history: run records, checkpoints, executed notebooks, step outputs, deployed
job executions and their logs, as a job's :class:`DescribeRetention` says.

Resume restores a notebook's namespace from the checkpoint of the newest execution of a step,
so that execution (with its run) is never pruned, nor any step of a job's newest run; every
other checkpoint goes. A running run and an execution that has not ended are never touched:
every delete says so in its own WHERE, whatever was read before it.

Changes go in batches, one short transaction each, each starting with its write (``DELETE ...
RETURNING``): SQLite then takes its write lock first and waits for another writer instead of
failing, and when two replicas prune at once each row is deleted once, the second finding it
gone, so neither counts it twice. A dry run does the same and rolls each batch back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    String,
    cast,
    delete,
    func,
    select,
    update,
)

from nbplane._time import now
from nbplane.deployments.models import JobExecutionStatus
from nbplane.jobs.models import DescribePrune, DescribeRetention, RunStatus, StepStatus
from nbplane.store.tables import (
    deployments,
    job_execution_logs,
    job_executions,
    job_run_notebooks,
    job_run_steps,
    job_runs,
    job_versions,
    jobs,
)

BATCH = 200
"""Runs or executions changed per transaction: short locks, bounded statements."""
VACUUM_PAGES = 256
"""Pages SQLite hands back per transaction (1 MB of its default 4 kB pages)."""
SQLITE_INCREMENTAL = 2
"""``PRAGMA auto_vacuum`` of a database that hands back freed pages on request."""
NOT_ENDED = [status for status in JobExecutionStatus if not status.final]
EXECUTED = (StepStatus.SUCCEEDED, StepStatus.FAILED)


@dataclass(frozen=True)
class DeployedJob:
    """A job of the control plane, with what its deployed version's config.ini keeps."""

    id: int
    key: str
    """``team/name``."""
    retention: dict[str, float]


class RetentionStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # what there is to prune
    def local_jobs(self) -> list[str]:
        """The directories of the jobs run on a user's machine that have run records."""
        with self.engine.connect() as connection:
            return list(
                connection.execute(
                    select(job_runs.c.job_dir)
                    .where(job_runs.c.execution_id.is_(None))
                    .distinct()
                    .order_by(job_runs.c.job_dir)
                ).scalars()
            )

    def deployed_jobs(self) -> list[DeployedJob]:
        """Every job of the control plane; ``retention`` is its deployed version's (empty when
        it is not deployed)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(jobs.c.id, jobs.c.team, jobs.c.name, job_versions.c.retention)
                .select_from(
                    jobs.outerjoin(deployments, deployments.c.job_id == jobs.c.id).outerjoin(
                        job_versions,
                        (job_versions.c.job_id == jobs.c.id)
                        & (job_versions.c.id == deployments.c.version),
                    )
                )
                .order_by(jobs.c.id)
            ).all()
        return [
            DeployedJob(id=row.id, key=f"{row.team}/{row.name}", retention=row.retention or {})
            for row in rows
        ]

    # pruning
    def prune_runs(
        self, job_dir: str, retention: DescribeRetention, *, dry_run: bool = False
    ) -> DescribePrune:
        """Prune the runs of the job in ``job_dir`` made on a user's machine."""
        found = DescribePrune(job=job_dir, dry_run=dry_run)
        of_job = (job_runs.c.job_dir == job_dir, job_runs.c.execution_id.is_(None))
        with self.engine.connect() as connection:
            runs = connection.execute(
                select(job_runs.c.id, job_runs.c.status, job_runs.c.started_at)
                .where(*of_job)
                .order_by(job_runs.c.id.desc())
            ).all()
            if not runs:
                return found
            needed = _needed_steps(connection, of_job, runs)
            holding = set(
                connection.execute(
                    select(job_run_steps.c.run_id).where(job_run_steps.c.id.in_(needed))
                ).scalars()
            )
            running = {run.id for run in runs if run.status == RunStatus.RUNNING}
            doomed, stripped = _split(runs, retention, keep={runs[0].id} | holding | running)
            spared = set(doomed) | running | {runs[0].id}
            checkpoints = [
                step_id
                for step_id, run_id in connection.execute(
                    select(job_run_steps.c.id, job_run_steps.c.run_id)
                    .join(job_runs, job_runs.c.id == job_run_steps.c.run_id)
                    .where(*of_job, job_run_steps.c.checkpoint.is_not(None))
                )
                if run_id not in spared and step_id not in needed
            ]
        ended = job_runs.c.status != RunStatus.RUNNING
        for batch in _batches(doomed):
            with self._transaction(dry_run) as connection:
                _delete_runs(connection, _runs(job_runs.c.id.in_(batch), ended), found)
        for batch in _batches([run for run in stripped if run not in running]):
            with self._transaction(dry_run) as connection:
                _strip_runs(connection, _runs(job_runs.c.id.in_(batch), ended), found)
        for batch in _batches(checkpoints):
            with self._transaction(dry_run) as connection:
                found.checkpoints += connection.execute(
                    update(job_run_steps)
                    .where(job_run_steps.c.id.in_(batch), job_run_steps.c.checkpoint.is_not(None))
                    .values(checkpoint=None)
                ).rowcount
        return self._finish(found)

    def prune_executions(
        self, job: DeployedJob, retention: DescribeRetention, *, dry_run: bool = False
    ) -> DescribePrune:
        """Prune a deployed job's executions, each with its run and log; its newest one and
        those not ended stay."""
        found = DescribePrune(job=job.key, dry_run=dry_run)
        with self.engine.connect() as connection:
            executions = connection.execute(
                select(
                    job_executions.c.id,
                    job_executions.c.status,
                    job_executions.c.created_at.label("started_at"),
                )
                .where(job_executions.c.job_id == job.id)
                .order_by(job_executions.c.created_at.desc(), job_executions.c.id)
            ).all()
        if not executions:
            return found
        active = {row.id for row in executions if row.status in NOT_ENDED}
        doomed, stripped = _split(executions, retention, keep={executions[0].id} | active)
        for batch in _batches(doomed):
            with self._transaction(dry_run) as connection:
                _delete_logs(connection, batch, found)
                gone = list(
                    connection.execute(
                        delete(job_executions)
                        .where(job_executions.c.id.in_(batch), _ended())
                        .returning(job_executions.c.id)
                    ).scalars()
                )
                found.executions += gone
                _delete_runs(connection, _runs(job_runs.c.execution_id.in_(gone)), found)
        for batch in _batches([execution for execution in stripped if execution not in active]):
            with self._transaction(dry_run) as connection:
                _delete_logs(connection, batch, found)
                ended = select(job_executions.c.id).where(job_executions.c.id.in_(batch), _ended())
                _strip_runs(connection, _runs(job_runs.c.execution_id.in_(ended)), found)
        return self._finish(found)

    def prune_orphans(self, *, dry_run: bool = False) -> DescribePrune:
        """Delete the runs of executions that are gone (their job was deleted with them)."""
        found = DescribePrune(job="(deleted jobs)", dry_run=dry_run)
        orphaned = (
            job_runs.c.execution_id.is_not(None),
            ~select(job_executions.c.id)
            .where(job_executions.c.id == job_runs.c.execution_id)
            .exists(),
        )
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(job_runs.c.id, job_runs.c.execution_id).where(*orphaned)
            ).all()
        for batch in _batches([row.id for row in rows]):
            with self._transaction(dry_run) as connection:
                _delete_runs(connection, _runs(job_runs.c.id.in_(batch), *orphaned), found)
        found.executions = sorted({row.execution_id for row in rows})
        return self._finish(found)

    @contextmanager
    def _transaction(self, dry_run: bool) -> Iterator[Connection]:
        """One batch: committed, or rolled back in a dry run (or when it fails)."""
        with self.engine.connect() as connection:
            transaction = connection.begin()
            try:
                yield connection
            except BaseException:
                transaction.rollback()
                raise
            if dry_run:
                transaction.rollback()
            else:
                transaction.commit()

    def _finish(self, found: DescribePrune) -> DescribePrune:
        if found.removed_anything and not found.dry_run and self.engine.dialect.name == "sqlite":
            self._return_space()
        return found

    def _return_space(self) -> None:
        """SQLite reuses freed pages but keeps its file's size, unless the database was made
        with incremental auto-vacuum (new ones are, see ``engine.py``): then hand them back, a
        few megabytes per transaction, so a job writing meanwhile waits no longer than that.
        PostgreSQL's autovacuum makes the space reusable on its own."""
        with self.engine.connect() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            if raw.execute("PRAGMA auto_vacuum").fetchone()[0] != SQLITE_INCREMENTAL:
                return
            free = raw.execute("PRAGMA freelist_count").fetchone()[0]
            while free:  # sqlite3 steps a pragma once; as a script it runs through
                raw.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES});")
                left = raw.execute("PRAGMA freelist_count").fetchone()[0]
                if left >= free:  # others freeing pages as fast: theirs to hand back
                    return
                free = left


def _split(
    rows: Sequence[Any], retention: DescribeRetention, keep: set[Any]
) -> tuple[list[Any], list[Any]]:
    """Of ``rows`` (newest first, each with ``id`` and ``started_at``): the ids to delete
    (beyond the newest ``keep_runs`` or older than ``keep_days``), and those kept whose outputs
    go (beyond the newest ``keep_outputs``). Ids in ``keep`` are never deleted."""
    cutoff = now() - timedelta(days=retention.keep_days) if retention.keep_days else None
    doomed, stripped = [], []
    for position, row in enumerate(rows):
        too_many = bool(retention.keep_runs) and position >= retention.keep_runs
        too_old = cutoff is not None and _utc(row.started_at) < cutoff
        if (too_many or too_old) and row.id not in keep:
            doomed.append(row.id)
        elif retention.keep_outputs and position >= retention.keep_outputs:
            stripped.append(row.id)
    return doomed, stripped


def _needed_steps(connection: Connection, of_job: tuple[Any, ...], runs: Sequence[Any]) -> set[int]:
    """The step records resume may read: the newest execution of each step of the job, as
    its newest finished run lists them (a step since removed from the job needs none)."""
    finished = next((run.id for run in runs if run.status != RunStatus.RUNNING), None)
    if finished is None:
        return set()
    names = select(job_run_steps.c.name).where(job_run_steps.c.run_id == finished)
    return set(
        connection.execute(
            select(func.max(job_run_steps.c.id))
            .join(job_runs, job_runs.c.id == job_run_steps.c.run_id)
            .where(
                *of_job,
                job_run_steps.c.status.in_(EXECUTED),
                job_run_steps.c.name.in_(names.scalar_subquery()),
            )
            .group_by(job_run_steps.c.name)
        ).scalars()
    )


def _runs(*where: Any) -> Select[tuple[int]]:
    return select(job_runs.c.id).where(*where)


def _ended() -> Any:
    return job_executions.c.status.not_in(NOT_ENDED)


def _delete_runs(connection: Connection, runs: Select[tuple[int]], found: DescribePrune) -> None:
    """Delete these runs with their steps (and checkpoints) and executed notebooks."""
    found.notebooks += _delete_notebooks(connection, runs)
    steps = connection.execute(  # SQLite 3.40 returns "checkpoint IS NOT NULL" wrong here
        delete(job_run_steps)
        .where(job_run_steps.c.run_id.in_(runs))
        .returning(func.length(job_run_steps.c.checkpoint))
    ).all()
    found.steps += len(steps)
    found.checkpoints += sum(1 for (size,) in steps if size is not None)
    found.runs += connection.execute(
        delete(job_runs).where(job_runs.c.id.in_(runs)).returning(job_runs.c.id)
    ).scalars()


def _delete_notebooks(connection: Connection, runs: Select[tuple[int]]) -> int:
    return len(
        connection.execute(
            delete(job_run_notebooks)
            .where(job_run_notebooks.c.run_id.in_(runs))
            .returning(job_run_notebooks.c.id)
        ).all()
    )


def _strip_runs(connection: Connection, runs: Select[tuple[int]], found: DescribePrune) -> None:
    """Keep these runs' records, without their executed notebooks and step outputs."""
    found.notebooks += _delete_notebooks(connection, runs)
    found.outputs += connection.execute(
        update(job_run_steps)
        .where(
            job_run_steps.c.run_id.in_(runs),
            cast(job_run_steps.c.outputs, String) != "[]",
        )
        .values(outputs=[])
    ).rowcount


def _delete_logs(connection: Connection, batch: Sequence[str], found: DescribePrune) -> None:
    """Delete the logs of the ended executions among ``batch``."""
    ended = select(job_executions.c.id).where(job_executions.c.id.in_(batch), _ended())
    chunks = connection.execute(
        delete(job_execution_logs)
        .where(job_execution_logs.c.execution_id.in_(ended))
        .returning(job_execution_logs.c.execution_id, func.length(job_execution_logs.c.text))
    ).all()
    found.logs += len({execution_id for execution_id, _ in chunks})
    found.log_characters += sum(length or 0 for _, length in chunks)


def _batches(ids: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(ids), BATCH):
        yield ids[start : start + BATCH]


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time we store is UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
