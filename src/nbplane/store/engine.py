"""Open nbplane's database and bring its schema up to date; the store and its parts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    Connection,
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
    from nbplane.store.leases import LeaseStore
    from nbplane.store.notify import ExecutionSignals
    from nbplane.store.retention import RetentionStore
    from nbplane.store.sessions import SessionStore

MIGRATIONS = Path(__file__).with_name("migrations")

SCHEMA_HEAD = "0012"
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


CLOSE_WAIT_SECONDS = 2.0
"""How long closing the store waits for queries still running in other threads."""

MIGRATION_LOCK = 0x6E62706C616E65
"""Key of the PostgreSQL advisory lock held while the schema changes ("nbplane" in ASCII)."""


def schema_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for one without nbplane's tables."""
    with engine.connect() as connection:
        if "alembic_version" not in inspect(connection).get_table_names():
            return None
        revision: str | None = connection.execute(
            text("SELECT version_num FROM alembic_version")
        ).scalar()
        return revision


def upgrade_schema(engine: Engine) -> tuple[str | None, str]:
    """Bring the schema to head; returns the revisions before and after. An empty database gets
    the tables and the head stamp directly (what the migrations produce, as a test checks); one
    behind runs Alembic's migrations. Either way Alembic is imported only when there is work for
    it. Replicas or ``nbplane db upgrade`` runs doing it at once take turns: on PostgreSQL under
    an advisory lock, on SQLite under the database file's own lock."""
    with engine.connect() as connection:
        locked = connection.dialect.name == "postgresql"
        if locked:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            connection.commit()
        try:
            return _upgrade(connection)
        finally:
            if locked:
                connection.rollback()  # a failed migration leaves its transaction to end first
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                connection.commit()


def _upgrade(connection: Connection) -> tuple[str | None, str]:
    with connection.begin():
        tables = set(inspect(connection).get_table_names())
        current: str | None = None
        if "alembic_version" in tables:
            current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            if current == SCHEMA_HEAD:
                return current, SCHEMA_HEAD
        elif not tables & set(metadata.tables):
            metadata.create_all(connection, checkfirst=False)  # none of them exists
            version = Table(
                "alembic_version", MetaData(), Column("version_num", String(32), primary_key=True)
            )
            version.create(connection)
            connection.execute(version.insert().values(version_num=SCHEMA_HEAD))
            return None, SCHEMA_HEAD
    with connection.begin():
        _migrate(connection)
    return current, SCHEMA_HEAD


def migrate(engine: Engine) -> None:
    """Run Alembic's migrations up to head."""
    with engine.begin() as connection:
        _migrate(connection)


def _migrate(connection: Connection) -> None:
    from alembic.command import upgrade
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    upgrade(config, "head")


def check_schema(engine: Engine) -> None:
    """Refuse a database whose schema is not at this nbplane's head, in one line saying what
    to do."""
    current = schema_revision(engine)
    if current == SCHEMA_HEAD:
        return
    url = redact_url(engine.url.render_as_string(hide_password=False))
    if current is None or current < SCHEMA_HEAD:
        raise StoreError(
            f"nbplane's database {url} is at schema revision {current or 'none (empty)'}, this "
            f"nbplane needs {SCHEMA_HEAD}: run `nbplane db upgrade` (NBPLANE_STORE_MIGRATE is "
            "off)",
            field="store_url",
        )
    raise StoreError(
        f"nbplane's database {url} is at schema revision {current}, newer than this nbplane's "
        f"{SCHEMA_HEAD}: run a newer nbplane",
        field="store_url",
    )


class Store(RunStore):
    """nbplane's own records; returns pydantic models, never rows. The run records' methods
    are its own (:class:`RunStore`, the runner's ``RunRecords``); the rest hang off it.

    The stores of the other nouns are imported when first asked for: a job run on a user's
    machine needs none of them, nor their models, before its first step.
    """

    def close(self) -> None:
        """Close every connection. A query still running in another thread (a stopped loop's
        last one: cancelling its task does not stop its thread) is given a moment to hand its
        connection back first; one handed back after the pool is disposed would stay open until
        the garbage collector finds it."""
        signals: ExecutionSignals | None = getattr(self, "_signals", None)
        if signals is not None:  # it may listen on a connection of its own
            signals.close()
        pool = self.engine.pool
        checked_out = getattr(pool, "checkedout", None)
        deadline = time.monotonic() + CLOSE_WAIT_SECONDS
        while checked_out is not None and checked_out() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.engine.dispose()

    def ping(self) -> None:
        """One cheap query; raises when the database does not answer (readiness)."""
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def schema(self) -> SchemaState:
        """The revision the database is at, to compare with the code's head (readiness)."""
        return SchemaState(schema_revision(self.engine))

    @property
    def executions(self) -> ExecutionStore:
        from nbplane.store.apis import ExecutionStore

        return ExecutionStore(self.engine, self.signals)

    _signals_made = threading.Lock()

    @property
    def signals(self) -> ExecutionSignals:
        """This store's signals about executions: one, made on first use (it may listen on a
        connection of its own)."""
        from nbplane.store.notify import ExecutionSignals

        with self._signals_made:
            signals: ExecutionSignals | None = getattr(self, "_signals", None)
            if signals is None:
                signals = self._signals = ExecutionSignals(self.engine)
        return signals

    @property
    def auth(self) -> AuthStore:
        from nbplane.store.auth import AuthStore

        return AuthStore(self.engine)

    @property
    def deployments(self) -> DeploymentStore:
        from nbplane.store.deployments import DeploymentStore

        return DeploymentStore(self.engine)

    @property
    def leases(self) -> LeaseStore:
        from nbplane.store.leases import LeaseStore

        return LeaseStore(self.engine)

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


def open_store(url: str, *, migrate: bool = True) -> Store:
    """Connect to nbplane's database at ``url`` and migrate it, or with ``migrate`` false
    check it is at head; errors say which URL failed."""
    with _opened(url, keep=True) as engine:
        if migrate:
            upgrade_schema(engine)
        else:
            check_schema(engine)
    return Store(engine)


def upgrade_database(url: str) -> tuple[str | None, str]:
    """``nbplane db upgrade``: the schema at head; the revisions before and after."""
    with _opened(url) as engine:
        return upgrade_schema(engine)


def database_revision(url: str) -> str | None:
    """``nbplane db status``: the revision the database is at (None: no schema yet)."""
    with _opened(url) as engine:
        return schema_revision(engine)


@contextmanager
def _opened(url: str, *, keep: bool = False) -> Iterator[Engine]:
    """An engine of ``url``, disposed of afterwards (on failure only, with ``keep``); database
    errors become a StoreError naming the URL."""
    ensure_sqlite_parent(url)
    try:
        engine = create_engine(url)
    except (SQLAlchemyError, ImportError) as exc:
        raise _cannot_open(url, exc) from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        yield engine
    except (SQLAlchemyError, ImportError, OSError) as exc:
        engine.dispose()
        raise _cannot_open(url, exc) from exc
    except BaseException:
        engine.dispose()
        raise
    if not keep:
        engine.dispose()


def _cannot_open(url: str, exc: Exception) -> StoreError:
    return StoreError(f"cannot open nbplane's database {redact_url(url)}: {exc}", field="store_url")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes on a new file: pruning frees space
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL keeps it consistent; no fsync per commit
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
