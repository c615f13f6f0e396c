"""``nbplane db upgrade`` and ``db status`` in subprocesses, on SQLite and PostgreSQL; servers
that are told not to migrate (NBPLANE_STORE_MIGRATE=false) refusing a schema behind; two
upgrades at once on PostgreSQL taking turns under the advisory lock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.command import upgrade
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from nbplane.store import open_store
from nbplane.store.engine import MIGRATION_LOCK, MIGRATIONS, SCHEMA_HEAD, upgrade_database
from nbplane.store.tables import metadata
from tests.conftest import database_url

PREVIOUS = f"{int(SCHEMA_HEAD) - 1:04d}"


def run(*args: str, home: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbplane", *args],
        env={**os.environ, "NBPLANE_HOME": str(home), **extra},
        capture_output=True,
        text=True,
        timeout=120,
    )


def at_revision(url: str, revision: str) -> None:
    """The database as an older nbplane left it."""
    engine = create_engine(url)
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        upgrade(config, revision)
    engine.dispose()


def schema_of(url: str) -> tuple[str | None, list[object]]:
    engine = create_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        found = context.get_current_revision(), compare_metadata(context, metadata)
    engine.dispose()
    return found


def test_db_upgrade_brings_an_old_schema_to_head_once(store_url: str, tmp_path: Path) -> None:
    at_revision(store_url, PREVIOUS)
    behind = run("db", "status", "--db", store_url, home=tmp_path)
    assert behind.returncode == 1, behind
    assert f"current: {PREVIOUS}" in behind.stdout and f"head: {SCHEMA_HEAD}" in behind.stdout
    assert "nbplane db upgrade" in behind.stderr

    first = run("db", "upgrade", "--db", store_url, home=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"from revision {PREVIOUS} to {SCHEMA_HEAD}" in first.stdout
    again = run("db", "upgrade", "--db", store_url, home=tmp_path)
    assert again.returncode == 0 and f"at revision {SCHEMA_HEAD} already" in again.stdout
    current = run("db", "status", home=tmp_path, NBPLANE_STORE_URL=store_url)
    assert current.returncode == 0 and f"current: {SCHEMA_HEAD}" in current.stdout
    assert schema_of(store_url) == (SCHEMA_HEAD, [])


def test_servers_told_not_to_migrate_refuse_a_schema_behind_in_one_line(
    store_url: str, tmp_path: Path
) -> None:
    at_revision(store_url, PREVIOUS)
    environment = {
        **os.environ,
        "NBPLANE_HOME": str(tmp_path),
        "NBPLANE_STORE_URL": store_url,
        "NBPLANE_STORE_MIGRATE": "false",
    }
    commands = (["serve", "--port", "0", "--single-tenant"], ["worker"])
    started = [  # side by side: each costs an interpreter start
        subprocess.Popen(
            [sys.executable, "-m", "nbplane", *command],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    for process in started:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode != 0
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, stderr
        assert f"revision {PREVIOUS}" in lines[0] and f"needs {SCHEMA_HEAD}" in lines[0]
        assert "run `nbplane db upgrade`" in lines[0]
    assert schema_of(store_url)[0] == PREVIOUS, "nothing migrated it"


@pytest.mark.postgres
def test_two_upgrades_at_once_take_turns_on_postgresql(tmp_path: Path) -> None:
    with database_url("postgresql", tmp_path) as url:
        at_revision(url, PREVIOUS)
        engine = create_engine(url)
        with engine.connect() as holding:
            holding.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            upgrades = [
                subprocess.Popen(
                    [sys.executable, "-m", "nbplane", "db", "upgrade", "--db", url],
                    env={**os.environ, "NBPLANE_HOME": str(tmp_path)},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(2)
            ]
            deadline = time.monotonic() + 60
            while waiting(holding) < 2:  # both are at the lock: nothing migrated meanwhile
                assert time.monotonic() < deadline, "the upgrades never waited for the lock"
                assert all(process.poll() is None for process in upgrades)
                time.sleep(0.1)
            holding.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            holding.commit()
        engine.dispose()
        said = [process.communicate(timeout=60) for process in upgrades]
        assert [process.returncode for process in upgrades] == [0, 0], said
        outputs = sorted(out for out, _ in said)
        assert outputs == [
            f"nbplane's database is at revision {SCHEMA_HEAD} already\n",
            f"nbplane's database upgraded from revision {PREVIOUS} to {SCHEMA_HEAD}\n",
        ]
        assert schema_of(url) == (SCHEMA_HEAD, [])


def waiting(connection: object) -> int:
    """Sessions waiting for the migration lock."""
    found = connection.execute(  # type: ignore[attr-defined]
        text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND ((classid::bigint << 32) | objid::bigint) = :key"
        ),
        {"key": MIGRATION_LOCK},
    ).scalar()
    connection.commit()  # type: ignore[attr-defined]
    return int(found)


def test_executions_from_before_timings_read_with_none(store_url: str) -> None:
    """Revision 0011 adds executions' ``timings``: a row an older nbplane wrote reads as having
    none recorded, not as a row that does not fit."""
    at_revision(store_url, "0010")
    engine = create_engine(store_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO executions (id, notebook, notebook_version, parameters, status, "
                "has_output, engine, timeout, retries, attempts, created_at, cancel_requested) "
                "VALUES ('old', 'double', 'v1', '{}', 'completed', false, 'isolated', 60, 0, 1, "
                "'2026-01-01 00:00:00+00:00', false)"
            )
        )
    engine.dispose()
    upgrade_database(store_url)
    store = open_store(store_url)
    try:
        old = store.executions.get("old")
    finally:
        store.close()
    assert old is not None and (old.status, old.timings) == ("completed", {})
