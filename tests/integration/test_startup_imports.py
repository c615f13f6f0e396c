"""What ``nbplane job run`` imports before its first step, and what an idle server leaves out.

Start-up is most of a short job's time, so every module added there is paid by every run. The
first step of a job of a team (what ``nbplane job create`` makes) writes ``sys.modules`` to a
file; nbplane's own modules and third-party packages found there must be in the allowed sets
below. The standard library
is not checked, nor private top-level modules (``_cython_…``, ``_distutils_hack``...), which
come and go with the interpreter and the packages' builds.

A server's memory at idle is what it imported: the parts of packages that only some requests
use (or none) are imported on first use, and the server test checks they stay out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nbplane.errors import ConfigError
from tests.conftest import Env, write_notebook

ALLOWED_PACKAGES = frozenset(
    {
        "click",  # the command line
        "rich",  # progress on the terminal
        "pydantic",  # settings and the run records' models
        "pydantic_core",
        "pydantic_settings",
        "annotated_types",
        "typing_extensions",
        "typing_inspection",
        "dotenv",  # pydantic_settings reads .env files
        "sqlalchemy",  # nbplane's store and the job's database
        "cython_runtime",  # made by SQLAlchemy's compiled parts
        "psycopg",  # ... when they are on PostgreSQL
        "psycopg_binary",
        "psycopg_c",
        "IPython",  # the first step is a Python cell, run with IPython's semantics
        "traitlets",
        "pygments",
    }
)
"""Third-party top-level packages a run may import before its first step."""

ALLOWED_NBPLANE = frozenset(
    {
        "nbplane",
        "nbplane._launch",  # the command's entry: job run goes to a warm runner if one runs
        "nbplane._warm",
        "nbplane._time",
        "nbplane.apis",
        "nbplane.apis.output",
        "nbplane.cli",
        "nbplane.cli._common",
        "nbplane.cli.jobs",
        "nbplane.errors",
        "nbplane.jobs",
        "nbplane.jobs.backend",
        "nbplane.jobs.capture",
        "nbplane.jobs.checkpoints",
        "nbplane.jobs.definition",
        "nbplane.jobs.ingestion",
        "nbplane.jobs.job_input",
        "nbplane.jobs.models",
        "nbplane.jobs.progress",
        "nbplane.jobs.resume",
        "nbplane.jobs.runner",
        "nbplane.jobs.shell",
        "nbplane.jobs.sql",
        "nbplane.notebooks",
        "nbplane.notebooks.reader",
        "nbplane.platform",
        "nbplane.platform.dburl",
        "nbplane.platform.logs",  # the settings' log level and format (standard library only)
        "nbplane.platform.names",  # the rule for team names
        "nbplane.settings",
        "nbplane.store",
        "nbplane.store.engine",
        "nbplane.store.runs",  # the run records' queries
        "nbplane.store.tables",
        # A job of a team looks up the team's default database connection.
        "nbplane.auth",
        "nbplane.auth.models",
        "nbplane.platform.secrets",
        "nbplane.plugins",
        "nbplane.sessions",
        "nbplane.sessions.connections",
        "nbplane.sessions.launchers",
        "nbplane.sessions.launchers.base",
        "nbplane.sessions.models",
        "nbplane.store.sessions",
    }
)
"""nbplane's modules a run may import before its first step."""

HOW_TO_FIND = (
    "To see who imports it: `python -X importtime -m nbplane job run DIR 2>&1 | less`; "
    "its importers are the lines after it indented less. Import it where it is needed (after "
    "the first step starts), or add it to the allowed set here with the reason."
)


def unexpected(modules: list[str]) -> list[str]:
    """nbplane's modules and third-party packages outside the allowed sets, sorted."""
    found = set()
    for module in modules:
        top = module.partition(".")[0]
        if top == "nbplane":
            if module not in ALLOWED_NBPLANE:
                found.add(module)
        elif not (top.startswith("_") or top in sys.stdlib_module_names or top in ALLOWED_PACKAGES):
            found.add(top)
    return sorted(found)


def test_the_first_step_starts_with_only_the_modules_a_run_needs(env: Env, tmp_path: Path) -> None:
    job = tmp_path / "startup"
    job.mkdir()
    (job / "config.ini").write_text("[owner]\nteam = analytics\n", encoding="utf-8")
    listing = tmp_path / "modules.txt"
    write_notebook(
        job / "10_first.ipynb",
        [
            "import sys\n"
            "with open(job_input.get_arguments()['listing'], 'w') as listing:\n"
            "    listing.write('\\n'.join(sorted(sys.modules)))",
            "%%sql\nSELECT 1",
        ],
    )
    env.run("job", "run", str(job), "--arguments", f'{{"listing": "{listing}"}}')
    modules = listing.read_text(encoding="utf-8").split()
    assert "nbplane.jobs.runner" in modules, modules  # the listing is the run's own
    found = unexpected(modules)
    assert not found, (
        f"nbplane job run imports {', '.join(found)} before its first step. {HOW_TO_FIND}"
    )


def test_a_module_outside_the_allowed_sets_is_named() -> None:
    assert unexpected(["json", "_cython_3_1", "sqlalchemy.sql", "nbplane.jobs.runner"]) == []
    assert unexpected(["httpx", "httpx._client", "nbplane.server.app", "alembic.command"]) == [
        "alembic",
        "httpx",
        "nbplane.server.app",
    ]


# --- the server ----------------------------------------------------------------------------------

SERVER_LEAVES_OUT = {
    "rfc3987_syntax": "jsonschema's iri format parser, a Lark grammar built at its import: "
    "nbplane.apis.schemas imports jsonschema without it, and it comes on the first iri check",
    "lark": "the parser rfc3987_syntax builds",
    "isoduration": "jsonschema's duration format checker (with arrow and dateutil): imported "
    "without it too, and it comes on the first duration check",
    "arrow": "what isoduration imports",
    "cryptography": "Fernet, imported by SecretBox on its first seal or open",
    "authlib": "OpenID Connect's client pieces: imported only where the authenticator is oidc",
    "joserfc": "the ID-token check of the oidc authenticator, likewise",
    "httpx._main": "httpx's command line (rich's progress bars, pygments): nbplane.server "
    "imports httpx without it",
}
"""Modules a started server must not have imported while idle, each with why it can go."""

SERVER_START = """
import asyncio, json, sys
from pathlib import Path

from nbplane.server.app import ServerConfig, create_app

root = Path(sys.argv[1])
app = create_app(ServerConfig(
    notebooks_dir=root / "apis", store_url=f"sqlite:///{root / 'nbplane.db'}",
    cache_dir=root / "cache", run_worker=False, run_control=False,
))

async def main():
    async with app.router.lifespan_context(app):
        service = app.state.service
        idle = sorted(sys.modules)
        from nbplane.apis.validation import validate_input
        from nbplane.errors import InvalidInput

        api = service.catalog.find("links")
        checked = {}
        for name, value in (("link", "https://例え.jp/ü"), ("link", "not an iri"),
                            ("every", "PT1H30M"), ("every", "an hour")):
            try:
                validate_input(api, {name: value})
                checked[value] = True
            except InvalidInput:
                checked[value] = False
        print(json.dumps({"idle": idle, "checked": checked, "later": sorted(sys.modules)}))

asyncio.run(main())
"""


def test_an_idle_server_leaves_out_what_only_some_requests_need(tmp_path: Path) -> None:
    """The server's lifespan (store, catalog, services; no worker, whose engines are theirs)
    with an API whose input has the ``iri`` and ``duration`` formats: their checks still work,
    on first use."""
    (tmp_path / "apis").mkdir()
    write_notebook(tmp_path / "apis" / "links.ipynb", [("link = ''", ["parameters"])])
    contract = {
        "input": {
            "type": "object",
            "properties": {
                "link": {"type": "string", "format": "iri"},
                "every": {"type": "string", "format": "duration"},
            },
        },
        "output": {},
    }
    (tmp_path / "apis" / "links.config.json").write_text(json.dumps(contract), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", SERVER_START, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    imported = sorted(
        {
            name
            for name in SERVER_LEAVES_OUT
            for module in found["idle"]
            if module == name or module.startswith(f"{name}.")
        }
    )
    assert not imported, "an idle server imports " + "; ".join(
        f"{name} ({SERVER_LEAVES_OUT[name]})" for name in imported
    )
    assert found["checked"] == {
        "https://例え.jp/ü": True,
        "not an iri": False,
        "PT1H30M": True,
        "an hour": False,
    }
    assert {"rfc3987_syntax", "isoduration"} <= set(found["later"])  # imported by the checks


def test_a_secret_key_that_is_not_a_fernet_key_stops_at_once(tmp_path: Path) -> None:
    """SecretBox checks the key when made, though it imports cryptography only when used."""
    from nbplane.platform.secrets import SecretBox
    from nbplane.settings import Settings

    with pytest.raises(ConfigError, match="not a Fernet key: Fernet key must be 32"):
        SecretBox(Settings(home=tmp_path, secret_key="server-key-not-a-fernet-key"))
    box = SecretBox(Settings(home=tmp_path))  # a key file made with the same rule
    assert box.open(box.seal({"token": "t"})) == {"token": "t"}
