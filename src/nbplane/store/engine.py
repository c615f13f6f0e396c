"""Open nbplane's database and bring its schema up to date; the store and its parts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

from nbplane.errors import StoreError
from nbplane.platform.dburl import ensure_sqlite_parent, redact_url
from nbplane.store.runs import RunStore
from nbplane.store.tables import job_state, metadata

if TYPE_CHECKING:
    from nbplane.store.apis import ExecutionStore
    from nbplane.store.auth import AuthStore
    from nbplane.store.deployments import DeploymentStore
    from nbplane.store.retention import RetentionStore
    from nbplane.store.sessions import SessionStore

MIGRATIONS = Path(__file__).with_name("migrations")

SCHEMA_HEAD = "0009"
"""The newest migration; tests check it matches Alembic's head."""


@dataclass(frozen=True)
class SchemaState:
    """The database's migration revision beside the code's head."""

    revision: str | None
    """None: no Alembic stamp (an empty database)."""
    head: str = SCHEMA_HEAD

    @property
    def at_head(self) -> bool:
        return self.revision == self.head


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
            metadata.create_all(connection, checkfirst=False)  # none of them exists
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


class Store(RunStore):
    """nbplane's own records; returns pydantic models, never rows. The run records' methods
    are its own (:class:`RunStore`, the runner's ``RunRecords``); the rest hang off it.

    The stores of the other nouns are imported when first asked for: a job run on a user's
    machine needs none of them, nor their models, before its first step.
    """

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        """One cheap query; raises when the database does not answer (readiness)."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def schema(self) -> SchemaState:
        """The revision the database is at, to compare with the code's head (readiness)."""
        with self.engine.connect() as connection:
            if "alembic_version" not in inspect(connection).get_table_names():
                return SchemaState(None)
            return SchemaState(
                connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            )

    @property
    def executions(self) -> ExecutionStore:
        from nbplane.store.apis import ExecutionStore

        return ExecutionStore(self.engine)

    @property
    def auth(self) -> AuthStore:
        from nbplane.store.auth import AuthStore

        return AuthStore(self.engine)

    @property
    def deployments(self) -> DeploymentStore:
        from nbplane.store.deployments import DeploymentStore

        return DeploymentStore(self.engine)

    @property
    def sessions(self) -> SessionStore:
        from nbplane.store.sessions import SessionStore

        return SessionStore(self.engine)

    @property
    def retention(self) -> RetentionStore:
        from nbplane.store.retention import RetentionStore

        return RetentionStore(self.engine)

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
    cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes on a new file: pruning frees space
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL keeps it consistent; no fsync per commit
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
