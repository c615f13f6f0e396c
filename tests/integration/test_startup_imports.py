"""What ``nbplane job run`` imports before its first step: start-up is most of a short job's
time, so every module added there is paid by every run. The first step of a job of a team
(what ``nbplane job create`` makes) writes ``sys.modules`` to a file; nbplane's own modules
and third-party packages found there must be in the allowed sets below. The standard library
is not checked, nor private top-level modules (``_cython_…``, ``_distutils_hack``...), which
come and go with the interpreter and the packages' builds."""

from __future__ import annotations

import sys
from pathlib import Path

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
