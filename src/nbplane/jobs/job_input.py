"""``job_input``: VDK's IJobInput method names, backed by SQLAlchemy and the job's state
(nbplane's database on a user's machine, the server's execution API in a deployed job)."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from nbplane.errors import ConfigError, QueryError
from nbplane.jobs.backend import JobState, find_connection
from nbplane.jobs.definition import Job
from nbplane.jobs.ingestion import Ingester
from nbplane.jobs.models import DescribeGrantedConnection
from nbplane.jobs.sql import (
    QueryResult,
    Statement,
    bind_parameters,
    split_statements,
    substitute,
)
from nbplane.platform.dburl import ensure_sqlite_parent, redact_url
from nbplane.settings import Settings

TemplateRunner = Callable[[Path, dict[str, Any]], Any]


def open_database(url: str) -> Engine:
    """An engine on the job's database; URL problems name the option at fault."""
    ensure_sqlite_parent(url)
    try:
        return create_engine(url)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise ConfigError(f"cannot use database {redact_url(url)}: {exc}", field="db") from exc


def check_database_url(url: str) -> None:
    """A URL SQLAlchemy cannot read, or of a dialect it does not have, is a wrong option: it
    stops the run before it is recorded (exit 2, one line), not as a failed run. No connection
    is made here; a database that does not answer fails the step that uses it."""
    from sqlalchemy.engine import make_url

    try:
        make_url(url).get_dialect()
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise ConfigError(f"cannot use database {redact_url(url)}: {exc}", field="db") from exc


class JobInput:
    """The object a job's steps receive; one per run (or per ``%job`` in a notebook)."""

    def __init__(
        self,
        job: Job,
        *,
        state: JobState,
        settings: Settings,
        db_url: str,
        arguments: dict[str, Any] | None = None,
        execution_id: str | None = None,
        template_runner: TemplateRunner | None = None,
    ) -> None:
        self._job = job
        self._state = state
        self._arguments = dict(arguments or {})
        self.db_url = db_url
        self._engine = open_database(db_url)
        self._ingester = Ingester(self._engine, settings.ingest_batch_size)
        self._started = time.time()
        self._execution_id = execution_id or f"{job.name}-{uuid.uuid4().hex[:12]}"
        self._template_runner = template_runner
        self._temp_dir: Path | None = None
        self._secrets: dict[str, Any] | None = None
        self._properties: dict[str, Any] | None = None
        self._connections: list[DescribeGrantedConnection] | None = None
        self._engines: dict[str, Engine] = {}
        self.skip_requested = False

    def __repr__(self) -> str:
        return f"<JobInput job={self._job.name!r} db={redact_url(self.db_url)!r}>"

    # queries
    def execute_query(
        self, query: str, parameters: Mapping[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run SQL (one or more statements); rows of the last one. ``:name`` parameters are
        bound by the driver from ``parameters``, the arguments and the properties; ``{name}``
        is replaced as text (VDK's behaviour, unsafe with values from outside)."""
        return self.query(query, parameters).rows

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> QueryResult:
        """Like ``execute_query`` but with column names, for tables and DataFrames."""
        result = QueryResult(columns=[], rows=[])
        for statement in split_statements(sql):
            result = self.run_statement(statement, parameters)
        return result

    def run_statement(
        self, statement: Statement, parameters: Mapping[str, Any] | None = None
    ) -> QueryResult:
        values = {**self.substitution_values(), **(parameters or {})}
        sql = substitute(statement.text, values)
        bound = bind_parameters(sql)
        missing = [name for name in bound.names if name not in values]
        if missing:
            raise QueryError(
                f"no value for {', '.join(':' + name for name in missing)}: give it as an "
                "argument, a property or in the query's parameters",
                statement=sql,
                line=statement.line,
            )
        try:
            with self._engine.connect() as connection:
                # Each statement commits as it runs, as in VDK; ingestion batches use
                # transactions of their own (one commit per batch, not per row).
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
                if bound.names:
                    cursor = connection.execute(
                        text(bound.text), {name: values[name] for name in bound.names}
                    )
                else:  # no parameters: the driver reads the SQL as written (e.g. a % sign)
                    cursor = connection.exec_driver_sql(sql)
                if not cursor.returns_rows:
                    return QueryResult(columns=[], rows=[])
                return QueryResult(
                    columns=list(cursor.keys()), rows=[tuple(row) for row in cursor.fetchall()]
                )
        except SQLAlchemyError as exc:
            reason = getattr(exc, "orig", None) or exc
            raise QueryError(
                f"{type(reason).__name__}: {reason}".strip(), statement=sql, line=statement.line
            ) from None

    def get_managed_connection(self, name: str | None = None) -> Any:
        """A PEP 249 connection to the job's database (returned to the pool when closed), or to
        the database connection ``name`` granted to the job's team."""
        if name is None:
            return self._engine.raw_connection()
        connection = self.get_connection(name)
        if "url" not in connection:
            raise ConfigError(
                f"connection {name!r} is not a database connection: it has no url",
                field="connection",
            )
        if name not in self._engines:
            self._engines[name] = open_database(connection["url"])
        return self._engines[name].raw_connection()

    def get_connection(self, name: str) -> dict[str, str]:
        """The fields of connection ``name`` granted to the job's team (e.g. url, bucket, key);
        its values are redacted from the step's output like secrets."""
        if self._connections is None:
            self._connections = self._state.connections(self._job.config.team)
        return dict(find_connection(self._connections, name).values)

    def substitution_values(self) -> dict[str, Any]:
        """What ``{name}`` and ``:name`` may refer to; arguments win over execution properties
        and properties."""
        return {**self.get_all_properties(), **self.get_execution_properties(), **self._arguments}

    # properties and secrets
    def get_property(self, name: str, default_value: Any = None) -> Any:
        return self.get_all_properties().get(name, default_value)

    def get_all_properties(self) -> dict[str, Any]:
        if self._properties is None:
            self._properties = self._state.get_properties(self._job.config.key)
        return dict(self._properties)

    def set_all_properties(self, properties: dict[str, Any]) -> None:
        _check_mapping(properties, "set_all_properties")
        self._state.set_properties(self._job.config.key, properties)
        self._properties = dict(properties)

    def get_secret(self, name: str, default_value: Any = None) -> Any:
        return self.get_all_secrets().get(name, default_value)

    def get_all_secrets(self) -> dict[str, Any]:
        if self._secrets is None:
            self._secrets = self._state.get_secrets(self._job.config.key)
        return dict(self._secrets)

    def set_all_secrets(self, secrets: dict[str, Any]) -> None:
        _check_mapping(secrets, "set_all_secrets")
        self._state.set_secrets(self._job.config.key, secrets)
        self._secrets = dict(secrets)

    def secret_values(self) -> list[str]:
        """Secret and connection values loaded so far, so output can be redacted without
        fetching them early."""
        values = [str(v) for v in (self._secrets or {}).values()]
        for connection in self._connections or []:
            values += connection.secret_values()
        return [value for value in values if len(value) >= 3]

    # arguments and job facts
    def get_arguments(self) -> dict[str, Any]:
        return dict(self._arguments)

    def get_name(self) -> str:
        return self._job.name

    def get_job_directory(self) -> Path:
        return self._job.directory

    def get_execution_properties(self) -> dict[str, Any]:
        return {
            "pa__execution_id": self._execution_id,
            "pa__job_name": self._job.name,
            "pa__team_name": self._job.config.team,
            "pa__job_start_unixtime": str(int(self._started)),
            "pa__job_start_ts_expr": f"cast({int(self._started)} as timestamp)",
            "pa__op_id": self._execution_id,
        }

    def skip_remaining_steps(self) -> None:
        """Finish this step, then end the run successfully without running the others."""
        self.skip_requested = True

    def get_temporary_write_directory(self) -> Path:
        if self._temp_dir is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix=f"nbplane-{self._job.name}-"))
        return self._temp_dir

    # ingestion
    def send_object_for_ingestion(
        self,
        payload: dict[str, Any],
        destination_table: str | None = None,
        method: str | None = None,
        target: str | None = None,
        collection_id: str | None = None,
    ) -> None:
        """Queue one row; it is written in a batch, at the latest when the step ends."""
        self._ingester.add_object(payload, destination_table or "")

    def send_tabular_data_for_ingestion(
        self,
        rows: Any,
        column_names: Sequence[str],
        destination_table: str | None = None,
        method: str | None = None,
        target: str | None = None,
        collection_id: str | None = None,
    ) -> None:
        """Queue rows (any iterable of sequences, or a DataFrame) with their column names."""
        self._ingester.add_rows(rows, column_names, destination_table or "")

    def flush_ingestion(self) -> dict[str, int]:
        self._ingester.flush()
        return dict(self._ingester.rows_written)

    # templates
    def execute_template(self, template_name: str, template_args: dict[str, Any]) -> Any:
        """Run the job in ``templates/<name>`` (or at a path) on this database with these args."""
        if self._template_runner is None:
            raise ConfigError("execute_template is not available here", field="template_name")
        directory = Path(template_name)
        if not directory.is_absolute():
            directory = self._job.directory / "templates" / template_name
        if not directory.is_dir():
            raise ConfigError(
                f"no template {template_name!r}: {directory} is not a directory",
                field="template_name",
            )
        self.flush_ingestion()
        return self._template_runner(directory, dict(template_args))

    def close(self) -> None:
        try:
            self.flush_ingestion()
        finally:
            if self._temp_dir is not None:
                shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._engine.dispose()
            for engine in self._engines.values():
                engine.dispose()


def _check_mapping(value: Any, method: str) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"{method}: expected a dict, got {type(value).__name__}", field=method)
