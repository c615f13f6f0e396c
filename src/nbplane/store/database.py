"""Open nbplane's database, bring its schema up to date, and read and write job runs."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker, undefer

from nbplane.dburl import ensure_sqlite_parent, redact_url
from nbplane.errors import StoreError
from nbplane.jobs.models import DescribeRun, DescribeRunStep, RunStatus
from nbplane.store.tables import JobRunRow, JobStateRow, RunNotebookRow, RunStepRow

MIGRATIONS = Path(__file__).with_name("migrations")


def now() -> datetime:
    return datetime.now(UTC)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


SCHEMA_HEAD = "0001"
"""The newest migration; tests check it matches Alembic's head."""


def upgrade_schema(engine: Engine) -> None:
    """Run Alembic migrations up to head, importing Alembic only when the database is behind."""
    with engine.connect() as connection:
        if inspect(connection).has_table("alembic_version"):
            current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            if current == SCHEMA_HEAD:
                return
    from alembic.command import upgrade
    from alembic.config import Config

    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        upgrade(config, "head")


class Store:
    """nbplane's own records; returns pydantic models, never ORM rows."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # job state: properties and encrypted secrets
    def get_properties(self, job_key: str) -> dict[str, Any]:
        with self.session() as session:
            row = session.get(JobStateRow, job_key)
            return dict(row.properties) if row else {}

    def set_properties(self, job_key: str, properties: dict[str, Any]) -> None:
        with self.session() as session:
            self._state_row(session, job_key).properties = dict(properties)

    def get_secrets_blob(self, job_key: str) -> bytes | None:
        with self.session() as session:
            row = session.get(JobStateRow, job_key)
            return row.secrets if row else None

    def set_secrets_blob(self, job_key: str, blob: bytes) -> None:
        with self.session() as session:
            self._state_row(session, job_key).secrets = blob

    @staticmethod
    def _state_row(session: Session, job_key: str) -> JobStateRow:
        row = session.get(JobStateRow, job_key)
        if row is None:
            row = JobStateRow(job_key=job_key, properties={})
            session.add(row)
        return row

    # runs
    def create_run(
        self,
        *,
        job_dir: str,
        job_name: str,
        job_team: str | None,
        arguments: dict[str, Any],
        db_url: str,
        resumed: bool,
        plan: list[str],
    ) -> DescribeRun:
        with self.session() as session:
            row = JobRunRow(
                job_dir=job_dir,
                job_name=job_name,
                job_team=job_team,
                status=RunStatus.RUNNING,
                started_at=now(),
                arguments=arguments,
                db_url=db_url,
                resumed=resumed,
                plan=plan,
                host=socket.gethostname(),
                pid=os.getpid(),
            )
            session.add(row)
            session.flush()
            return _describe_run(row, steps=[])

    def add_step(self, run_id: int, step: DescribeRunStep, checkpoint: bytes | None) -> None:
        with self.session() as session:
            fields = step.model_dump(exclude={"id", "run_id", "has_checkpoint"})
            session.add(RunStepRow(run_id=run_id, checkpoint=checkpoint, **fields))

    def finish_run(
        self,
        run_id: int,
        status: RunStatus,
        error: dict[str, Any] | None,
        notebooks: dict[str, str],
    ) -> DescribeRun:
        with self.session() as session:
            row = session.get_one(JobRunRow, run_id)
            row.status, row.error, row.finished_at = status, error, now()
            row.notebooks = [
                RunNotebookRow(file=name, content=content) for name, content in notebooks.items()
            ]
            session.flush()
            return _describe_run(row)

    def list_runs(self, job_dir: str, limit: int = 50) -> list[DescribeRun]:
        with self.session() as session:
            rows = session.scalars(
                select(JobRunRow)
                .where(JobRunRow.job_dir == job_dir)
                .order_by(JobRunRow.id.desc())
                .limit(limit)
            ).all()
            self._close_abandoned(rows)
            return [_describe_run(row) for row in rows]

    def get_run(self, job_dir: str, run_id: int) -> DescribeRun | None:
        with self.session() as session:
            row = session.get(JobRunRow, run_id)
            if row is None or row.job_dir != job_dir:
                return None
            self._close_abandoned([row])
            return _describe_run(row)

    def run_notebooks(self, run_id: int) -> dict[str, str]:
        with self.session() as session:
            rows = session.scalars(
                select(RunNotebookRow)
                .where(RunNotebookRow.run_id == run_id)
                .order_by(RunNotebookRow.id)
            ).all()
            return {row.file: row.content for row in rows}

    def last_success(self, job_dir: str, chain_hash: str) -> DescribeRunStep | None:
        """The latest step of this job that succeeded with exactly this code and arguments."""
        with self.session() as session:
            found = session.execute(
                select(RunStepRow, RunStepRow.checkpoint.is_not(None))
                .join(JobRunRow)
                .where(
                    JobRunRow.job_dir == job_dir,
                    RunStepRow.chain_hash == chain_hash,
                    RunStepRow.status == "succeeded",
                )
                .order_by(RunStepRow.id.desc())
                .limit(1)
            ).first()
            return _describe_step(found[0], has_checkpoint=bool(found[1])) if found else None

    def load_checkpoint(self, step_id: int) -> bytes | None:
        with self.session() as session:
            row = session.scalars(
                select(RunStepRow)
                .options(undefer(RunStepRow.checkpoint))
                .where(RunStepRow.id == step_id)
            ).one()
            return row.checkpoint

    @staticmethod
    def _close_abandoned(rows: Any) -> None:
        """A run whose process died on this host can never finish: say so in its record."""
        host = socket.gethostname()
        for row in rows:
            if row.status == RunStatus.RUNNING and row.host == host and not _pid_alive(row.pid):
                row.status, row.finished_at = RunStatus.FAILED, now()
                row.error = {
                    "message": f"the process running it (pid {row.pid}) ended "
                    "before the run finished"
                }


def _describe_step(row: RunStepRow, has_checkpoint: bool = False) -> DescribeRunStep:
    return DescribeRunStep.model_validate(
        {
            **{c: getattr(row, c) for c in DescribeRunStep.model_fields if c != "has_checkpoint"},
            "has_checkpoint": has_checkpoint,
        }
    )


def _describe_run(row: JobRunRow, steps: list[RunStepRow] | None = None) -> DescribeRun:
    fields = {c: getattr(row, c) for c in DescribeRun.model_fields if c != "steps"}
    step_rows = row.steps if steps is None else steps
    return DescribeRun.model_validate({**fields, "steps": [_describe_step(s) for s in step_rows]})


def open_store(url: str) -> Store:
    """Connect to nbplane's database at ``url`` and migrate it; errors say which URL failed."""
    ensure_sqlite_parent(url)
    try:
        engine = create_engine(url)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        upgrade_schema(engine)
    except (SQLAlchemyError, ImportError, OSError) as exc:
        raise StoreError(
            f"cannot open nbplane's database {redact_url(url)}: {exc}", field="store_url"
        ) from exc
    return Store(engine)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
