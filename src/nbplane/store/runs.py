"""Job runs: their records, steps, executed notebooks and checkpoints, and what resume reads."""

from __future__ import annotations

import os
import socket
from typing import Any

from sqlalchemy import Engine, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from nbplane._time import now
from nbplane.errors import StoreError
from nbplane.jobs.models import (
    CreateRun,
    DescribeInterruptedRun,
    DescribeJobHistory,
    DescribeRun,
    DescribeRunStep,
    DescribeStepExecution,
    RunStatus,
    StepStatus,
)
from nbplane.store.tables import job_run_notebooks, job_run_steps, job_runs

STEP_FIELDS = [name for name in DescribeRunStep.model_fields if name != "has_checkpoint"]
RUN_FIELDS = [name for name in DescribeRun.model_fields if name != "steps"]
NUMBER_ATTEMPTS = 20
"""How often a run start tries the next number when another run of its job took it."""
EXECUTED = (StepStatus.SUCCEEDED, StepStatus.FAILED)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunStore:
    """Run records, numbered per job (``job_dir``); returns pydantic models, never rows."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_run(self, run: CreateRun, execution_id: str | None = None) -> DescribeRun:
        """Start a run with the next number of its job. The number is read in the INSERT
        itself; when two runs of a job start at once one breaks the unique (job_dir, number)
        and takes the next one."""
        values = {
            **run.model_dump(),
            "status": RunStatus.RUNNING,
            "started_at": now(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "execution_id": execution_id,
        }
        following = (
            select(func.coalesce(func.max(job_runs.c.number), 0) + 1)
            .where(job_runs.c.job_dir == run.job_dir)
            .scalar_subquery()
        )
        for _ in range(NUMBER_ATTEMPTS):
            try:
                with self.engine.begin() as connection:
                    key = connection.execute(
                        insert(job_runs).values(**values, number=following)
                    ).inserted_primary_key
                    assert key is not None
                    number = connection.execute(
                        select(job_runs.c.number).where(job_runs.c.id == key[0])
                    ).scalar_one()
            except IntegrityError:
                continue
            return DescribeRun.model_validate({**values, "id": key[0], "number": number})
        raise StoreError(
            f"could not number a new run of {run.job_dir}: {NUMBER_ATTEMPTS} runs of it "
            "started at the same moment",
            field="job_dir",
        )

    def add_step(self, run_id: int, step: DescribeRunStep, checkpoint: bytes | None) -> None:
        fields = step.model_dump(exclude={"id", "run_id", "has_checkpoint"})
        with self.engine.begin() as connection:
            connection.execute(
                insert(job_run_steps).values(run_id=run_id, checkpoint=checkpoint, **fields)
            )

    def finish_run(
        self,
        run_id: int,
        status: RunStatus,
        error: dict[str, Any] | None,
        notebooks: dict[str, str],
    ) -> DescribeRun:
        with self.engine.begin() as connection:
            connection.execute(
                update(job_runs)
                .where(job_runs.c.id == run_id)
                .values(status=status, error=error, finished_at=now())
            )
            if notebooks:
                connection.execute(
                    insert(job_run_notebooks),
                    [{"run_id": run_id, "file": f, "content": c} for f, c in notebooks.items()],
                )
        found = self._runs(job_runs.c.id == run_id, limit=1)
        return found[0]

    def list_runs(self, job_dir: str, limit: int = 50) -> list[DescribeRun]:
        return self._runs(job_runs.c.job_dir == job_dir, limit=limit)

    def list_runs_under(self, root: str, limit: int = 50) -> list[DescribeRun]:
        """Local runs (not deployed executions) of every job in ``root`` or below it."""
        prefix = root.rstrip("/")
        below = job_runs.c.job_dir.startswith(prefix + "/", autoescape=True)
        inside = (job_runs.c.job_dir == (prefix or "/")) | below
        return self._runs(inside, job_runs.c.execution_id.is_(None), limit=limit)

    def execution_run(self, execution_id: str) -> DescribeRun | None:
        """The run record a deployed job's execution made (None before its first step)."""
        found = self._runs(job_runs.c.execution_id == execution_id, limit=1)
        return found[0] if found else None

    def get_run(self, job_dir: str, run_id: int) -> DescribeRun | None:
        """A run of this job by its global id."""
        found = self._runs(job_runs.c.id == run_id, job_runs.c.job_dir == job_dir, limit=1)
        return found[0] if found else None

    def run_by_number(self, job_dir: str, number: int) -> DescribeRun | None:
        """A run of this job by its number among the job's runs."""
        found = self._runs(job_runs.c.number == number, job_runs.c.job_dir == job_dir, limit=1)
        return found[0] if found else None

    def _runs(self, *where: Any, limit: int) -> list[DescribeRun]:
        """Runs newest first with their steps; a run whose process died is closed first."""
        self._close_abandoned(*where)
        with self.engine.connect() as connection:
            runs = (
                connection.execute(
                    select(*(job_runs.c[f] for f in RUN_FIELDS))
                    .where(*where)
                    .order_by(job_runs.c.id.desc())
                    .limit(limit)
                )
                .mappings()
                .all()
            )
            steps = (
                connection.execute(
                    select(*(job_run_steps.c[f] for f in STEP_FIELDS))
                    .where(job_run_steps.c.run_id.in_([run["id"] for run in runs]))
                    .order_by(job_run_steps.c.position)
                )
                .mappings()
                .all()
            )
        by_run: dict[int, list[DescribeRunStep]] = {}
        for step in steps:
            by_run.setdefault(step["run_id"], []).append(DescribeRunStep.model_validate(step))
        return [
            DescribeRun.model_validate({**run, "steps": by_run.get(run["id"], [])}) for run in runs
        ]

    def job_history(self, job_dir: str) -> DescribeJobHistory:
        """For resume: the latest execution of each step name of the job, and the runs that
        ended while a step ran; three queries whatever the number of steps."""
        self._close_abandoned(job_runs.c.job_dir == job_dir)
        of_job = job_runs.c.job_dir == job_dir
        latest = (
            select(
                job_run_steps.c.id,
                func.row_number()
                .over(partition_by=job_run_steps.c.name, order_by=job_run_steps.c.id.desc())
                .label("rank"),
            )
            .join(job_runs)
            .where(of_job, job_run_steps.c.status.in_(EXECUTED))
            .subquery()
        )
        unfinished_steps = func.sum(
            case((job_run_steps.c.status.in_((StepStatus.FAILED, StepStatus.NOT_RUN)), 1), else_=0)
        )
        with self.engine.connect() as connection:
            last = connection.execute(select(func.max(job_runs.c.number)).where(of_job)).scalar()
            executions = [
                DescribeStepExecution(
                    run_number=row["number"],
                    arguments=row["arguments"],
                    step=DescribeRunStep.model_validate(row),
                )
                for row in connection.execute(
                    select(
                        *(job_run_steps.c[f] for f in STEP_FIELDS),
                        job_run_steps.c.checkpoint.is_not(None).label("has_checkpoint"),
                        job_runs.c.number,
                        job_runs.c.arguments,
                    )
                    .join(job_runs)
                    .join(latest, latest.c.id == job_run_steps.c.id)
                    .where(latest.c.rank == 1)
                ).mappings()
            ]
            # A run that did not succeed yet recorded no failed or unrun step was cut short:
            # its steps are recorded in order, so the next one was running.
            interrupted = connection.execute(
                select(job_runs.c.id, job_runs.c.number, func.count(job_run_steps.c.id))
                .select_from(job_runs.outerjoin(job_run_steps))
                .where(of_job, job_runs.c.status != RunStatus.SUCCEEDED)
                .group_by(job_runs.c.id, job_runs.c.number)
                .having(func.coalesce(unfinished_steps, 0) == 0)
            ).all()
        return DescribeJobHistory(
            last_run_number=last,
            executions=executions,
            interrupted=[
                DescribeInterruptedRun(run_id=run_id, run_number=number, position=position)
                for run_id, number, position in interrupted
            ],
        )

    def run_execution_id(self, run_id: int) -> str | None:
        """Which job execution recorded this run (None for a run on a user's machine)."""
        with self.engine.connect() as connection:
            found: str | None = connection.execute(
                select(job_runs.c.execution_id).where(job_runs.c.id == run_id)
            ).scalar()
        return found

    def run_notebooks(self, run_id: int) -> dict[str, str]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(job_run_notebooks.c.file, job_run_notebooks.c.content)
                .where(job_run_notebooks.c.run_id == run_id)
                .order_by(job_run_notebooks.c.id)
            ).all()
        return {file: content for file, content in rows}

    def load_checkpoint(self, step_id: int) -> bytes | None:
        with self.engine.connect() as connection:
            blob: bytes | None = connection.execute(
                select(job_run_steps.c.checkpoint).where(job_run_steps.c.id == step_id)
            ).scalar()
        return blob

    def _close_abandoned(self, *where: Any) -> None:
        """A run whose process died on this host can never finish: say so in its record."""
        host = socket.gethostname()
        with self.engine.begin() as connection:
            running = connection.execute(
                select(job_runs.c.id, job_runs.c.pid).where(
                    *where, job_runs.c.status == RunStatus.RUNNING, job_runs.c.host == host
                )
            ).all()
            for run_id, pid in running:
                if _pid_alive(pid):
                    continue
                connection.execute(
                    update(job_runs)
                    .where(job_runs.c.id == run_id)
                    .values(
                        status=RunStatus.FAILED,
                        finished_at=now(),
                        error={
                            "message": f"the process running it (pid {pid}) ended "
                            "before the run finished"
                        },
                    )
                )
