"""``nbplane serve`` and ``nbplane worker``: notebooks as REST APIs, and the control plane of
deployed jobs; ``nbplane db``: nbplane's database schema."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import click

from nbplane.cli._common import CliConsole, NbplaneGroup, output_format, print_result
from nbplane.errors import ConfigError

LOOPBACK = {"127.0.0.1", "localhost", "::1"}

notebooks_dir_option = click.option(
    "--notebooks-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Directory of <name>.ipynb notebooks, each with its <name>.config.json contract "
    "(default: NBPLANE_HOME/apis).",
)


def _notebooks_dir(given: Path | None) -> Path:
    from nbplane.settings import get_settings

    if given is not None:
        if not given.is_dir():
            raise ConfigError(f"--notebooks-dir {given} is not a directory", field="notebooks_dir")
        return given.resolve()
    default = get_settings().home / "apis"
    default.mkdir(parents=True, exist_ok=True)
    return default


db_option = click.option(
    "--db",
    default=None,
    help="SQLAlchemy URL of nbplane's database, shared by the server and its workers "
    "(default: NBPLANE_STORE_URL, then SQLite in NBPLANE_HOME).",
)


def _reachable(host: str) -> str:
    """The address a session on this machine reaches the server at (any-address binds too)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _check_session_settings() -> None:
    """Session settings that cannot be used stop ``serve`` with one line, before it listens."""
    from nbplane.sessions.launchers import LAUNCHERS
    from nbplane.sessions.resource_classes import load_resource_classes
    from nbplane.settings import get_settings

    settings = get_settings()
    load_resource_classes(settings.session_resource_classes)
    LAUNCHERS.load(settings.session_launcher)


def _check_isolation(single_tenant: bool) -> str | None:
    """The local executor and launcher run users' code on this machine: without a sandbox it
    could read this server's key and database, so ``serve`` stops, in one line, unless told
    that only one team of trusted users uses it. Returns why, when it was told."""
    from nbplane.platform.sandbox import isolation_problem
    from nbplane.settings import get_settings

    settings = get_settings()
    if "local" not in (settings.job_executor, settings.session_launcher):
        return None
    problem = isolation_problem(settings)
    if problem and not single_tenant:
        raise ConfigError(
            f"local jobs and sessions would run unsandboxed ({problem}) and could read this "
            "server's key and database; --single-tenant accepts that (one team of trusted "
            "users only)",
            field="single_tenant",
        )
    return problem


log_level_option = click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="What to log; info includes a line per request (default: NBPLANE_LOG_LEVEL, info).",
)
log_format_option = click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="Log lines as text, or as JSON objects for a log collector (default: "
    "NBPLANE_LOG_FORMAT, text).",
)


Say = Callable[[str, bool], None]
"""Tells one start-up line; True: a warning."""


def _logging(level: str | None, format: str | None) -> tuple[dict[str, Any], Say]:
    """The logging configuration from the options, else the settings, applied at once (uvicorn
    applies it again, as its log_config); and how to tell the start-up lines: on the terminal,
    or as log records when the log is JSON lines, whose every line must be an object."""
    import logging.config

    from nbplane.platform.logs import LogFormat, LogLevel, logging_config
    from nbplane.settings import get_settings

    settings = get_settings()
    format = format or settings.log_format
    config = logging_config(cast(LogLevel, level or settings.log_level), cast(LogFormat, format))
    logging.config.dictConfig(config)
    console, log = CliConsole(stderr=True), logging.getLogger("nbplane.server")

    def say(text: str, warning: bool = False) -> None:
        if format == "json":
            log.log(logging.WARNING if warning else logging.INFO, text)
        else:
            console.print(f"[yellow]warning: {text}[/]" if warning else text, highlight=False)

    return config, say


def _store_url(db: str | None) -> str:
    from nbplane.settings import get_settings

    return db or get_settings().resolved_store_url


ROLES = ("all", "web", "worker", "control")


def _check_schema(url: str) -> bool:
    """Whether to migrate at start (NBPLANE_STORE_MIGRATE); when not, a schema that is not
    current stops the command here, in one line, before it listens."""
    from nbplane.settings import get_settings
    from nbplane.store import open_store

    if get_settings().store_migrate:
        return True
    open_store(url, migrate=False).close()
    return False


@click.command()
@notebooks_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=5050,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on.",
)
@db_option
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve without bearer tokens; refused unless --host is a loopback address.",
)
@click.option(
    "--workers",
    "concurrency",
    default=4,
    show_default=True,
    type=click.IntRange(0, 256),
    help="Executions this server runs at once; 0 leaves all of them to `nbplane worker` processes.",
)
@click.option(
    "--pool-size",
    default=4,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Most shells or kernels each engine keeps ready (per notebook for reuse engines); "
    "NBPLANE_POOL_MAX overrides it.",
)
@click.option(
    "--max-body",
    default=1_048_576,
    show_default=True,
    type=click.IntRange(1),
    help="Largest request body accepted, in bytes (larger: 413).",
)
@click.option(
    "--single-tenant",
    is_flag=True,
    help="Serve even when the local job executor or session launcher has no sandbox (not "
    "root, no bwrap, NBPLANE_SANDBOX=none): jobs and sessions then run as this server's user "
    "and can read its key and database. For one team of trusted users only.",
)
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="all",
    show_default=True,
    help="What this process runs. web: the API, web page and sessions (no background loops, no "
    "executions: give those to worker and control processes). worker: notebook-API executions "
    "from the shared database. control: the deployments' scheduler, job monitor, notifier and "
    "retention and the sessions' loop, in the one replica holding the control lease. all: "
    "everything (one machine). worker and control answer only /health/* and /metrics on "
    "--host/--port.",
)
@log_level_option
@log_format_option
def serve(
    notebooks_dir: Path | None,
    host: str,
    port: int,
    db: str | None,
    no_auth: bool,
    concurrency: int,
    pool_size: int,
    max_body: int,
    single_tenant: bool,
    log_level: str | None,
    log_format: str | None,
    role: str,
) -> None:
    """Serve every notebook with a contract in --notebooks-dir as a REST API, and the control
    plane: deployed jobs, their schedules and executions (NBPLANE_JOB_EXECUTOR runs them)."""
    import uvicorn

    from nbplane.auth.admin import admin_secret
    from nbplane.server.app import ServerConfig, create_app
    from nbplane.settings import get_settings

    log_config, say = _logging(log_level, log_format)
    notebooks_dir = _notebooks_dir(notebooks_dir)
    if no_auth and host not in LOOPBACK:
        raise ConfigError(
            f"--no-auth is only allowed on a loopback address, not {host}", field="no_auth"
        )
    _check_session_settings()
    admin_secret(get_settings())  # a bad NBPLANE_ADMIN_TOKEN stops here, in one line
    unsandboxed = _check_isolation(single_tenant)
    store_url = _store_url(db)
    config = ServerConfig(
        notebooks_dir=notebooks_dir,
        store_url=store_url,
        cache_dir=get_settings().home / "cache" / "executions",
        auth=not no_auth,
        run_worker=concurrency > 0 and role in ("all", "worker"),
        concurrency=max(concurrency, 1),
        pool_size=pool_size,
        max_body_bytes=max_body,
        run_control=role in ("all", "control"),
        public_url=f"http://{_reachable(host)}:{port}",
        run_web=role in ("all", "web"),
        migrate=_check_schema(store_url),
    )
    shown = f"[{host}]" if ":" in host else host
    say(
        f"nbplane serving {notebooks_dir} on http://{shown}:{port} (API docs at /docs)"
        if config.run_web
        else f"nbplane {role} on http://{shown}:{port} (health and metrics only)",
        False,
    )
    if unsandboxed:
        say(f"--single-tenant: local jobs and sessions run unsandboxed ({unsandboxed})", True)
    if no_auth:
        say("--no-auth: anyone on this machine can run these notebooks", True)
    elif config.run_web:
        say(
            "every endpoint but /health/* and /metrics needs a bearer token; create one with "
            "`nbplane token create NAME` (same NBPLANE_STORE_URL or --db)",
            False,
        )
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_config=log_config,
        access_log=False,  # nbplane's own access log says more (duration, user)
        timeout_graceful_shutdown=10,
    )


@click.command()
@notebooks_dir_option
@db_option
@click.option(
    "--concurrency",
    default=4,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Executions this worker runs at once.",
)
@click.option(
    "--pool-size",
    default=4,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Most shells or kernels each engine keeps ready (per notebook for reuse engines); "
    "NBPLANE_POOL_MAX overrides it.",
)
@log_level_option
@log_format_option
def worker(
    notebooks_dir: Path | None,
    db: str | None,
    concurrency: int,
    pool_size: int,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """Run queued executions from the shared database, apart from the web server."""
    from nbplane.apis.catalog import ApiCatalog
    from nbplane.apis.worker import Worker
    from nbplane.store import open_store

    _, say = _logging(log_level, log_format)
    url = _store_url(db)
    store = open_store(url, migrate=_check_schema(url))
    process = Worker(
        store,
        ApiCatalog(_notebooks_dir(notebooks_dir)),
        concurrency=concurrency,
        pool_size=pool_size,
    )
    say(f"nbplane worker {process.worker_id} taking executions of {notebooks_dir}", False)

    async def run() -> None:
        await process.start()
        try:
            await asyncio.Event().wait()
        finally:
            await process.stop()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        store.close()


@click.group(cls=NbplaneGroup, no_args_is_help=True)
def db() -> None:
    """nbplane's own database (NBPLANE_STORE_URL or --db): its schema revision."""


@db.command()
@db_option
@output_format
def upgrade(db: str | None, output: str) -> None:
    """Bring the database's schema to this nbplane's revision; safe to run again, and by
    several processes at once. What a Helm hook runs before the servers start
    (NBPLANE_STORE_MIGRATE=false)."""
    from nbplane.store.engine import upgrade_database

    before, after = upgrade_database(_store_url(db))
    if before == after:
        line = f"nbplane's database is at revision {after} already"
    else:
        line = f"nbplane's database upgraded from revision {before or 'none'} to {after}"
    print_result(output, line, {"before": before, "after": after})


@db.command()
@db_option
@output_format
def status(db: str | None, output: str) -> None:
    """Print the database's schema revision and this nbplane's; exit 1 when it is behind."""
    from nbplane.store.engine import SCHEMA_HEAD, database_revision

    current = database_revision(_store_url(db))
    behind = current is None or current < SCHEMA_HEAD
    print_result(
        output,
        f"current: {current or 'none'}\nhead: {SCHEMA_HEAD}",
        {"current": current, "head": SCHEMA_HEAD, "behind": behind},
    )
    if behind:
        click.echo("behind: run `nbplane db upgrade`", err=True)
        sys.exit(1)
