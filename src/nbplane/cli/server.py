"""``nbplane serve`` and ``nbplane worker``: notebooks as REST APIs, and the control plane of
deployed jobs."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
from rich.console import Console

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


def _store_url(db: str | None) -> str:
    from nbplane.settings import get_settings

    return db or get_settings().resolved_store_url


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
    help="Kernels started ahead of time for isolated executions.",
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
) -> None:
    """Serve every notebook with a contract in --notebooks-dir as a REST API, and the control
    plane: deployed jobs, their schedules and executions (NBPLANE_JOB_EXECUTOR runs them)."""
    import uvicorn

    from nbplane.auth.admin import admin_secret
    from nbplane.server.app import ServerConfig, create_app
    from nbplane.settings import get_settings

    console = Console(stderr=True)
    notebooks_dir = _notebooks_dir(notebooks_dir)
    if no_auth and host not in LOOPBACK:
        raise ConfigError(
            f"--no-auth is only allowed on a loopback address, not {host}", field="no_auth"
        )
    _check_session_settings()
    admin_secret(get_settings())  # a bad NBPLANE_ADMIN_TOKEN stops here, in one line
    unsandboxed = _check_isolation(single_tenant)
    config = ServerConfig(
        notebooks_dir=notebooks_dir,
        store_url=_store_url(db),
        cache_dir=get_settings().home / "cache" / "executions",
        auth=not no_auth,
        run_worker=concurrency > 0,
        concurrency=max(concurrency, 1),
        pool_size=pool_size,
        max_body_bytes=max_body,
        public_url=f"http://{_reachable(host)}:{port}",
    )
    shown = f"[{host}]" if ":" in host else host
    console.print(
        f"nbplane serving {notebooks_dir} on http://{shown}:{port} (API docs at /docs)",
        highlight=False,
    )
    if unsandboxed:
        console.print(
            f"[yellow]warning: --single-tenant: local jobs and sessions run unsandboxed "
            f"({unsandboxed})[/]",
            highlight=False,
        )
    if no_auth:
        console.print(
            "[yellow]warning: --no-auth: anyone on this machine can run these notebooks[/]"
        )
    else:
        console.print(
            "every endpoint but /health needs a bearer token; create one with "
            "`nbplane token create NAME` (same NBPLANE_STORE_URL or --db)",
            highlight=False,
        )
    uvicorn.run(
        create_app(config), host=host, port=port, log_level="warning", timeout_graceful_shutdown=10
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
    help="Kernels started ahead of time for isolated executions.",
)
def worker(notebooks_dir: Path | None, db: str | None, concurrency: int, pool_size: int) -> None:
    """Run queued executions from the shared database, apart from the web server."""
    from nbplane.apis.catalog import ApiCatalog
    from nbplane.apis.worker import Worker
    from nbplane.store import open_store

    store = open_store(_store_url(db))
    process = Worker(
        store,
        ApiCatalog(_notebooks_dir(notebooks_dir)),
        concurrency=concurrency,
        pool_size=pool_size,
    )
    Console(stderr=True).print(
        f"nbplane worker {process.worker_id} taking executions of {notebooks_dir}", highlight=False
    )

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
