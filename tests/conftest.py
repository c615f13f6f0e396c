"""Shared fixtures: a real database per test (SQLite, and PostgreSQL when configured) and
helpers that run the real ``nbplane`` command in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

POSTGRES_URL = os.environ.get("NBPLANE_TEST_POSTGRES_URL")
"""Admin URL of a PostgreSQL server; each test gets a database of its own on it."""
REQUIRE_POSTGRES = os.environ.get("NBPLANE_TEST_REQUIRE_POSTGRES") == "1"

os.environ.setdefault("NBPLANE_SESSION_POOL_SIZE", "0")
"""Servers started by tests warm no JupyterLab pool (two real servers each, on 2 cores) unless
a test asks for one; the launcher and session tests that exercise the pool set it themselves."""


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextmanager
def database_url(kind: str, directory: Path) -> Iterator[str]:
    """A SQLite file in ``directory``, or a fresh PostgreSQL database dropped afterwards."""
    if kind == "sqlite":  # in a directory of its own, which a sandboxed job may be given
        (directory / "warehouse").mkdir(exist_ok=True)
        yield f"sqlite:///{directory / 'warehouse' / 'warehouse.sqlite'}"
        return
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("NBPLANE_TEST_POSTGRES_URL is not set but PostgreSQL is required")
        pytest.skip("PostgreSQL not configured (set NBPLANE_TEST_POSTGRES_URL)")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"nbplane_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def in_process_store(
    patch: pytest.MonkeyPatch, url: str, home: Path, team: str, **settings: str
) -> tuple[str, Any, dict[str, str]]:
    """nbplane's settings pointed at ``home`` and the store at ``url`` (a PostgreSQL database,
    else SQLite in ``home``) for an app built in this process, its sessions running a command
    that fails at once: the store's URL, the store with alice in ``team``, and a token of alice
    ("member") and of the admin ("admin")."""
    from nbplane.settings import get_settings
    from nbplane.store import open_store

    store_url = url if url.startswith("postgresql") else f"sqlite:///{home / 'nbplane.db'}"
    for key, value in {
        "NBPLANE_HOME": str(home),
        "NBPLANE_STORE_URL": store_url,
        "NBPLANE_SESSION_COMMAND": "false",
        "NBPLANE_SESSION_POOL_SIZE": "0",
        **settings,
    }.items():
        patch.setenv(key, value)
    get_settings.cache_clear()
    store = open_store(store_url)
    store.auth.create_user("alice")
    store.auth.add_member("alice", team)
    tokens = {
        "member": store.auth.create_token("alice-member", "alice")[1],
        "admin": store.auth.create_token("admin-of-tests")[1],
    }
    return store_url, store, tokens


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The job's target database: a SQLite file, or a fresh PostgreSQL database."""
    with database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory that sandboxed jobs and sessions can read (as the sandbox's user): outside
    /tmp, which is private in the sandbox, and outside NBPLANE_HOME and the server user's home,
    which it hides. For files a test hands to them, as a shared file system would."""
    directory = Path(tempfile.mkdtemp(prefix="nbplane-test-", dir="/var/tmp"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


@dataclass
class Env:
    """Environment for one test: nbplane's home, its store and the job database."""

    home: Path
    db_url: str
    variables: dict[str, str]

    def run(
        self, *args: str, check: int | None = 0, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run ``nbplane ARGS`` for real; asserts the exit code when ``check`` is not None."""
        result = subprocess.run([sys.executable, "-m", "nbplane", *args], env=self.variables,
                                capture_output=True, text=True, timeout=timeout)
        if check is not None:
            assert result.returncode == check, (
                f"exit {result.returncode}, wanted {check}\n--- stdout\n{result.stdout}"
                f"\n--- stderr\n{result.stderr}")
        return result

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        from sqlalchemy import create_engine

        engine = create_engine(self.db_url)
        try:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.exec_driver_sql(sql).fetchall()]
        finally:
            engine.dispose()


@pytest.fixture
def env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """nbplane's home and store for this test; the store lives on the same backend as the job
    database, so the PostgreSQL variant exercises nbplane's own tables there too."""
    home = tmp_path / "home"
    store_url = db_url if db_url.startswith("postgresql") else f"sqlite:///{home / 'nbplane.db'}"
    variables = {"NBPLANE_HOME": str(home), "NBPLANE_DB_URL": db_url,
                 "NBPLANE_STORE_URL": store_url, "COLUMNS": "200", "NO_COLOR": "1"}
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    from nbplane.settings import get_settings

    get_settings.cache_clear()
    return Env(home=home, db_url=db_url, variables={**os.environ, **variables})


def write_notebook(path: Path, cells: list[Any], *, string_sources: bool = False) -> Path:
    """Write a notebook; a cell is a source string (tagged ``step``), or ``(source, tags)``,
    or ``("markdown", source)``. Sources are lists of lines unless ``string_sources``."""
    notebook = nbformat.v4.new_notebook()
    for cell in cells:
        if isinstance(cell, tuple) and cell[0] in ("markdown", "raw"):
            new = (nbformat.v4.new_markdown_cell if cell[0] == "markdown"
                   else nbformat.v4.new_raw_cell)(cell[1])
        else:
            source, tags = (cell, ["step"]) if isinstance(cell, str) else cell
            new = nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)})
        notebook.cells.append(new)
    text = nbformat.writes(notebook)  # sources become lists of lines
    if string_sources:
        data = json.loads(text)
        for cell in data["cells"]:
            cell["source"] = "".join(cell["source"])
        text = json.dumps(data, indent=1)
    path.write_text(text, encoding="utf-8")
    return path
