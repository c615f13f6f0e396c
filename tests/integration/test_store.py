"""nbplane's own database: migrations bring both backends exactly to the models."""

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from nbplane.store import open_store
from nbplane.store.engine import MIGRATIONS, SCHEMA_HEAD, migrate
from nbplane.store.tables import metadata


def test_schema_head_constant_is_alembics_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_HEAD


def test_migrations_match_the_models(db_url: str) -> None:
    from sqlalchemy import create_engine

    engine = create_engine(db_url)
    migrate(engine)  # what an existing database goes through
    engine.dispose()
    store = open_store(db_url)  # finds the schema current and changes nothing
    try:
        with store.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), metadata)
            tables = set(inspect(connection).get_table_names())
    finally:
        store.close()
    assert diff == []
    assert {"job_runs", "job_run_steps", "job_run_notebooks", "job_state"} <= tables


def test_a_new_database_is_created_at_head_without_migrating(db_url: str) -> None:
    store = open_store(db_url)
    try:
        with store.engine.connect() as connection:
            context = MigrationContext.configure(connection)
            assert context.get_current_revision() == SCHEMA_HEAD
            assert compare_metadata(context, metadata) == []
    finally:
        store.close()
