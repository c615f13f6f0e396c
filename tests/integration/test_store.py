"""nbplane's own database: migrations bring both backends exactly to the models."""

import threading
from concurrent.futures import ThreadPoolExecutor

from alembic.autogenerate import compare_metadata
from alembic.command import upgrade
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from nbplane._time import now
from nbplane.jobs.models import CreateRun
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


def _new_run(job_dir: str) -> CreateRun:
    return CreateRun(
        job_dir=job_dir, job_name="job", arguments={}, db_url="sqlite://", resumed=False, plan=[]
    )


def test_runs_starting_at_once_get_distinct_numbers_per_job(db_url: str) -> None:
    store = open_store(db_url)
    try:
        start = threading.Barrier(8)

        def start_run(index: int) -> int:
            start.wait()
            return store.create_run(_new_run(f"/jobs/{index % 2}")).number

        with ThreadPoolExecutor(8) as pool:
            numbers = list(pool.map(start_run, range(8)))
        assert sorted(numbers[0::2]) == [1, 2, 3, 4] and sorted(numbers[1::2]) == [1, 2, 3, 4]
        assert [run.number for run in store.list_runs("/jobs/0")] == [4, 3, 2, 1]
        assert store.run_by_number("/jobs/1", 2) is not None
        assert store.run_by_number("/jobs/1", 5) is None
    finally:
        store.close()


def test_the_migration_numbers_existing_runs_per_job(db_url: str) -> None:
    """Runs recorded before 0006 get numbers per job_dir in id order; a deployed execution's
    runs move from their scratch directories to their deployed job."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        upgrade(config, "0005")
        connection.execute(
            text("INSERT INTO jobs (id, team, name, created_at) VALUES (1, 'data', 'daily', :t)"),
            {"t": now()},
        )
        connection.execute(
            text(
                "INSERT INTO job_executions (id, job_id, version, status, started_by, "
                "arguments, resources, timeout, executor, created_at, cancel_requested) "
                "VALUES ('e1', 1, 'v', 'completed', 'alice', '{}', '{}', 60, 'local', :t, false)"
            ),
            {"t": now()},
        )
        for job_dir, execution in [
            ("/a", None),
            ("/b", None),
            ("/tmp/x1/daily", "e1"),
            ("/a", None),
            ("/tmp/x2/daily", "e1"),
        ]:
            connection.execute(
                text(
                    "INSERT INTO job_runs (job_dir, job_name, status, started_at, arguments, "
                    "db_url, resumed, plan, host, pid, execution_id) VALUES (:d, 'j', "
                    "'succeeded', :t, '{}', 'sqlite://', false, '[]', 'h', 1, :e)"
                ),
                {"d": job_dir, "t": now(), "e": execution},
            )
    engine.dispose()
    store = open_store(db_url)
    try:
        numbers = {
            job_dir: [run.number for run in store.list_runs(job_dir)]
            for job_dir in ("/a", "/b", "deployed:data/daily")
        }
        assert numbers == {"/a": [2, 1], "/b": [1], "deployed:data/daily": [2, 1]}
        assert store.create_run(_new_run("/a")).number == 3
    finally:
        store.close()


def test_runs_under_a_root_match_its_path_literally(db_url: str) -> None:
    """``_`` and ``%`` in the root are characters, not patterns: a sibling never matches."""
    store = open_store(db_url)
    try:
        for job_dir in ("/lab_root/job", "/lab_root", "/labXroot/job", "/lab_root2/job", "/a%/j"):
            store.create_run(_new_run(job_dir))
        under = sorted(run.job_dir for run in store.list_runs_under("/lab_root/"))
        assert under == ["/lab_root", "/lab_root/job"]
        assert [run.job_dir for run in store.list_runs_under("/a%")] == ["/a%/j"]
        assert len(store.list_runs_under("/")) == 5
    finally:
        store.close()
