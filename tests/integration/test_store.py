"""nbplane's own database: migrations bring both backends exactly to the models."""

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from nbplane.store import open_store
from nbplane.store.database import MIGRATIONS, SCHEMA_HEAD
from nbplane.store.tables import Base


def test_schema_head_constant_is_alembics_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_HEAD


def test_migrations_match_the_models(db_url: str) -> None:
    open_store(db_url).close()
    store = open_store(db_url)  # finds the schema current and changes nothing
    try:
        with store.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
            tables = set(inspect(connection).get_table_names())
    finally:
        store.close()
    assert diff == []
    assert {"job_runs", "job_run_steps", "job_run_notebooks", "job_state"} <= tables
