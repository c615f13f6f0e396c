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


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """nbplane's own database: a SQLite file in ``tmp_path``, or a fresh PostgreSQL database."""
    with database_url(request.param, tmp_path) as url:
        yield url if url.startswith("postgresql") else f"sqlite:///{tmp_path / 'nbplane.db'}"


@pytest.fixture(autouse=True)
def own_nbplane_home(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test has an NBPLANE_HOME of its own (a test that needs one sets its own anyway):
    none falls back to the shared ~/.nbplane, which parallel workers would race on. A home a
    module- or session-scoped fixture set is kept: an app it built reads its settings again
    (at each lifespan) and must find the same secret key and files in every test."""
    from nbplane.settings import get_settings

    shared = os.environ.get("NBPLANE_HOME")
    if shared and Path(shared).is_relative_to(tmp_path_factory.getbasetemp()):
        return
    monkeypatch.setenv("NBPLANE_HOME", str(tmp_path / "nbplane-home"))
    get_settings.cache_clear()


SHARED_SCOPES = ("session", "package", "module")
"""Fixture scopes, widest first, whose instances several tests share."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``--dist loadgroup``), the tests sharing one of our module-, package-
    or session-scoped fixtures (a server, a Kubernetes API server, a browser) go to one worker,
    so that each of those is started once rather than once per worker; one group per parameter
    (backend) of such a fixture. Every other test goes wherever a worker is free."""
    tests = Path(__file__).parent
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        shared = []
        for name in item.fixturenames:
            definitions = item._fixtureinfo.name2fixturedefs.get(name)
            fixture = definitions[-1] if definitions else None
            if fixture is None or fixture.scope not in SHARED_SCOPES:
                continue
            if Path(fixture.func.__code__.co_filename).is_relative_to(tests):
                shared.append(fixture)
        if not shared:
            continue
        widest = min(shared, key=lambda fixture: SHARED_SCOPES.index(fixture.scope))
        if widest.scope == "module":
            group = item.nodeid.split("::")[0]
        else:  # the directory of the conftest.py that defines it
            group = str(Path(widest.func.__code__.co_filename).parent.relative_to(tests.parent))
        params = item.callspec.params if hasattr(item, "callspec") else {}
        group += "".join(f"[{params[f.argname]}]" for f in shared if f.argname in params)
        item.add_marker(pytest.mark.xdist_group(group))


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
        result = subprocess.run(
            [sys.executable, "-m", "nbplane", *args],
            env=self.variables,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check is not None:
            assert result.returncode == check, (
                f"exit {result.returncode}, wanted {check}\n--- stdout\n{result.stdout}"
                f"\n--- stderr\n{result.stderr}"
            )
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
    variables = {
        "NBPLANE_HOME": str(home),
        "NBPLANE_DB_URL": db_url,
        "NBPLANE_STORE_URL": store_url,
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }
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
            new = (
                nbformat.v4.new_markdown_cell if cell[0] == "markdown" else nbformat.v4.new_raw_cell
            )(cell[1])
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
