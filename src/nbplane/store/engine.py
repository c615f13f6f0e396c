"""Open nbplane's database, bring its schema up to date, and read and write job runs."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from nbplane._time import now
from nbplane.errors import StoreError
from nbplane.jobs.models import CreateRun, DescribeRun, DescribeRunStep, RunStatus
from nbplane.platform.dburl import ensure_sqlite_parent, redact_url
from nbplane.store.apis import ExecutionStore
from nbplane.store.auth import AuthStore
from nbplane.store.deployments import DeploymentStore
from nbplane.store.sessions import SessionStore
from nbplane.store.tables import job_run_notebooks, job_run_steps, job_runs, job_state, metadata

MIGRATIONS = Path(__file__).with_name("migrations")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


SCHEMA_HEAD = "0008"
"""The newest migration; tests check it matches Alembic's head."""


def upgrade_schema(engine: Engine) -> None:
    """Bring the schema to head. An empty database gets the tables and the head stamp directly
    (what the migrations produce, as a test checks); one behind runs Alembic's migrations.
    Either way Alembic is imported only when there is work for it."""
    with engine.begin() as connection:
        tables = set(inspect(connection).get_table_names())
        if "alembic_version" in tables:
            current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            if current == SCHEMA_HEAD:
                return
        elif not tables & set(metadata.tables):
            metadata.create_all(connection)
            version = Table(
                "alembic_version", MetaData(), Column("version_num", String(32), primary_key=True)
            )
            version.create(connection)
            connection.execute(version.insert().values(version_num=SCHEMA_HEAD))
            return
    migrate(engine)


def migrate(engine: Engine) -> None:
    """Run Alembic's migrations up to head."""
    from alembic.command import upgrade
    from alembic.config import Config

    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        upgrade(config, "head")


STEP_FIELDS = [name for name in DescribeRunStep.model_fields if name != "has_checkpoint"]
RUN_FIELDS = [name for name in DescribeRun.model_fields if name != "steps"]


class Store:
    """nbplane's own records; returns pydantic models, never rows."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def close(self) -> None:
        self.engine.dispose()

    @property
    def executions(self) -> ExecutionStore:
        return ExecutionStore(self.engine)

    @property
    def auth(self) -> AuthStore:
        return AuthStore(self.engine)

    @property
    def deployments(self) -> DeploymentStore:
        return DeploymentStore(self.engine)

    @property
    def sessions(self) -> SessionStore:
        return SessionStore(self.engine)

    # job state: properties and encrypted secrets
    def get_properties(self, job_key: str) -> dict[str, Any]:
        properties = self._state_value(job_key, job_state.c.properties)
        return dict(properties) if properties else {}

    def set_properties(self, job_key: str, properties: dict[str, Any]) -> None:
        self._set_state(job_key, properties=dict(properties))

    def get_secrets_blob(self, job_key: str) -> bytes | None:
        blob: bytes | None = self._state_value(job_key, job_state.c.secrets)
        return blob

    def set_secrets_blob(self, job_key: str, blob: bytes) -> None:
        self._set_state(job_key, secrets=blob)

    def _state_value(self, job_key: str, column: Any) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(select(column).where(job_state.c.job_key == job_key)).scalar()

    def _set_state(self, job_key: str, **values: Any) -> None:
        with self.engine.begin() as connection:
            updated = connection.execute(
                update(job_state).where(job_state.c.job_key == job_key).values(**values)
            )
            if not updated.rowcount:
                connection.execute(
                    insert(job_state).values(job_key=job_key, **{"properties": {}, **values})
                )

    # runs
    def create_run(self, run: CreateRun, execution_id: str | None = None) -> DescribeRun:
        values = {
            **run.model_dump(),
            "status": RunStatus.RUNNING,
            "started_at": now(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "execution_id": execution_id,
        }
        with self.engine.begin() as connection:
            key = connection.execute(insert(job_runs).values(**values)).inserted_primary_key
        assert key is not None
        run_id = key[0]
        return DescribeRun.model_validate({**values, "id": run_id})

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

    def get_run(self, job_dir: str, run_id: int) -> DescribeRun | None:
        found = self._runs(job_runs.c.id == run_id, job_runs.c.job_dir == job_dir, limit=1)
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

    def last_success(self, job_dir: str, chain_hash: str) -> DescribeRunStep | None:
        """The latest step of this job that succeeded with exactly this code and arguments."""
        with self.engine.connect() as connection:
            found = (
                connection.execute(
                    select(
                        *(job_run_steps.c[f] for f in STEP_FIELDS),
                        job_run_steps.c.checkpoint.is_not(None).label("has_checkpoint"),
                    )
                    .join(job_runs)
                    .where(
                        job_runs.c.job_dir == job_dir,
                        job_run_steps.c.chain_hash == chain_hash,
                        job_run_steps.c.status == "succeeded",
                    )
                    .order_by(job_run_steps.c.id.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
        return DescribeRunStep.model_validate(found) if found else None

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
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL keeps it consistent; no fsync per commit
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
