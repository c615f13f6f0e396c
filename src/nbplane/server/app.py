"""The FastAPI application: store, notebook catalog, an in-process worker, the control loops
under their lease, routers; each part on or off by the server's role (``nbplane serve
--role``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from time import monotonic
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from nbplane import __version__
from nbplane.apis.catalog import ApiCatalog
from nbplane.apis.service import ExecutionService
from nbplane.apis.worker import Worker
from nbplane.auth.admin import bootstrap_admin
from nbplane.auth.authenticators import authenticator_named
from nbplane.auth.logins import Logins
from nbplane.auth.service import AuthService
from nbplane.deployments.context import ExecutionContextService
from nbplane.deployments.service import DeploymentService
from nbplane.platform.lease import LeasedLoops
from nbplane.platform.metrics import Metrics
from nbplane.server import errors
from nbplane.server.auth import TokenCheck
from nbplane.server.control import control_lease, control_loops
from nbplane.server.door import Door
from nbplane.server.observe import Observe, ReadinessCheck
from nbplane.server.routes import (
    apis,
    auth,
    connections,
    context,
    deployments,
    docs,
    jupyrest,
    observe,
    proxy,
    sessions,
    tokens,
    users,
    web,
)
from nbplane.sessions.launchers import launcher_named
from nbplane.sessions.service import SessionService
from nbplane.settings import get_settings
from nbplane.store import Store, open_store


@dataclass
class ServerConfig:
    notebooks_dir: Path
    store_url: str
    cache_dir: Path
    auth: bool = True
    run_worker: bool = True
    concurrency: int = 4
    pool_size: int = 4
    max_body_bytes: int = 1_048_576
    max_upload_bytes: int = 64 * 1_048_576
    run_control: bool = True
    public_url: str | None = None
    """The address the server listens on: where sessions reach it (NBPLANE_URL inside them)
    unless NBPLANE_SESSION_PUBLIC_URL says otherwise, and users (sessions' ``url``) unless
    NBPLANE_PUBLIC_URL does."""
    run_web: bool = True
    """Serve the API, the web page and sessions; without it only the health routes answer."""
    migrate: bool = True
    """Bring the schema to head at start (NBPLANE_STORE_MIGRATE); else refuse one behind."""


def create_app(config: ServerConfig) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # each part's undoing is pushed as it is made: a start that fails half-way (a bad
        # setting, an unreachable API server) releases what it made, the database first of all
        async with AsyncExitStack() as undo:
            store = open_store(config.store_url, migrate=config.migrate)
            undo.callback(store.close)
            bootstrap_admin(AuthService(store), get_settings())  # before anyone may call
            catalog = ApiCatalog(config.notebooks_dir)
            worker = None
            if config.run_worker:
                worker = Worker(
                    store,
                    catalog,
                    concurrency=config.concurrency,
                    pool_size=config.pool_size,
                    metrics=metrics,
                )
                await worker.start()
                undo.push_async_callback(worker.stop)
            checks = store_checks(store) + ([worker_check(worker)] if worker else [])
            app.state.readiness.extend(checks)
            # the next lifespan (tests run several) adds its own
            undo.callback(lambda: [app.state.readiness.remove(check) for check in checks])
            metrics.read_at_scrape(
                lambda: store.executions.queued(), lambda: store.sessions.count_by_status()
            )
            undo.callback(metrics.read_at_scrape, None, None)
            app.state.store = store
            app.state.auth_service = AuthService(store)
            app.state.service = ExecutionService(store, catalog, worker, config.cache_dir)
            settings = get_settings().model_copy(update={"store_url": config.store_url})
            app.state.deployments = DeploymentService(
                store, settings, settings.job_executor, config.public_url, metrics
            )
            app.state.execution_context = ExecutionContextService(store, settings, metrics)
            launcher = launcher_named(settings.session_launcher, settings)
            undo.push_async_callback(launcher.close)
            app.state.sessions = SessionService(
                store, settings, launcher, config.public_url, auth=config.auth, metrics=metrics
            )
            app.state.logins = Logins(
                app.state.auth_service,
                authenticator_named(settings.resolved_authenticator, settings),
                app.state.sessions.connections,
            )
            app.state.token_check = TokenCheck(
                app.state.auth_service, enabled=config.auth, renew=app.state.logins.renew_if_due
            )
            app.state.proxy = proxy.SessionProxy()
            undo.push_async_callback(app.state.proxy.close)
            control = None
            if config.run_control:
                lease = control_lease(settings, store)
                control = control_loops(app.state.deployments, app.state.sessions, lease, settings)
                await control.start()
                undo.push_async_callback(control.stop)
                checks.append(control_check(control))
                app.state.readiness.append(checks[-1])
            app.state.control = control
            yield

    app = FastAPI(
        title="nbplane",
        version=__version__,
        description="Notebooks as REST APIs: each notebook's contract is its input and output.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if config.run_web else None,
    )
    app.state.metrics = metrics
    app.state.readiness = list[ReadinessCheck]()
    """Named checks of /health/ready; the lifespan adds the store's and the worker's, other
    parts append theirs."""
    errors.install(app)
    app.add_middleware(Door, limit=config.max_body_bytes, upload_limit=config.max_upload_bytes)
    app.include_router(observe.router, tags=["health"])
    if config.run_web:
        include_web(app)
    app.add_middleware(Observe, metrics=metrics)  # outermost: it sees every answer, refusals too
    app.openapi = lambda: notebook_openapi(app)  # type: ignore[method-assign]
    return app


def include_web(app: FastAPI) -> None:
    """The API, the web page and the offline docs: what the web role answers beyond health."""
    app.include_router(apis.router, tags=["executions"])
    app.include_router(deployments.router, tags=["jobs"])
    app.include_router(context.router, tags=["execution"])
    app.include_router(auth.router, tags=["auth"])
    app.include_router(jupyrest.router)
    app.include_router(sessions.router, tags=["sessions"])
    app.include_router(connections.router, tags=["connections"])
    app.include_router(users.router, tags=["users"])
    app.include_router(users.teams, tags=["teams"])
    app.include_router(tokens.router, tags=["tokens"])
    app.include_router(proxy.router)
    web.install(app)
    docs.install(app)


def store_checks(store: Store) -> list[ReadinessCheck]:
    """The database answers a query; its schema is the one this code was written for."""

    def database() -> tuple[bool, str]:
        store.ping()
        return True, "answers"

    def schema() -> tuple[bool, str]:
        state = store.schema()
        if state.at_head:
            return True, f"at head {state.head}"
        return False, f"at {state.revision or 'nothing'}, head is {state.head}: migrate it"

    return [ReadinessCheck("database", database), ReadinessCheck("schema", schema)]


def worker_check(worker: Worker) -> ReadinessCheck:
    """The in-process API worker's claim loop went round recently."""

    def alive() -> tuple[bool, str]:
        since = monotonic() - worker.last_beat
        limit = worker.stale_after.total_seconds()
        if since <= limit:
            return True, f"looked for work {since:.1f} s ago"
        return False, f"stalled: last looked for work {since:.0f} s ago (limit {limit:.0f} s)"

    return ReadinessCheck("api_worker", alive)


def control_check(control: LeasedLoops) -> ReadinessCheck:
    """The control lease was reached recently: its holder runs the loops, a standby is ready."""

    def alive() -> tuple[bool, str]:
        since = monotonic() - control.last_beat
        role = "holds the lease, runs the loops" if control.holding else "standing by"
        if control.alive:
            return True, f"{role}; lease reached {since:.1f} s ago"
        return False, f"{role}; the lease's place not reached for {since:.0f} s"

    return ReadinessCheck("control", alive)


def notebook_openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with a path per notebook open to everyone showing its own input
    and output, and every operation's error statuses (errors.document_errors)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    errors.document_errors(schema)
    generic = schema["paths"]["/api/v1/notebooks/{name}/executions"]["post"]
    service: ExecutionService | None = getattr(app.state, "service", None)
    for api in service.catalog.all() if service else []:
        if api.broken or api.contract is None or api.contract.teams:
            continue  # the document is public: a team's API is not revealed to others
        schema["paths"][f"/api/v1/notebooks/{api.name}/executions"] = {
            "post": {
                "tags": ["notebooks"],
                "summary": f"Execute {api.name}",
                "operationId": f"execute_{api.name}",
                "security": generic.get("security", []),
                "parameters": [p for p in generic["parameters"] if p["in"] != "path"],
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"parameters": api.input_schema},
                                "additionalProperties": False,
                            }
                        }
                    },
                },
                "responses": {
                    **generic["responses"],
                    "201": {
                        "description": "The execution; its output (null until it completes) "
                        "follows the output schema",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "allOf": [{"$ref": "#/components/schemas/DescribeExecution"}],
                                    "properties": {
                                        "output": {"anyOf": [api.output_schema, {"type": "null"}]}
                                    },
                                }
                            }
                        },
                    },
                },
            }
        }
    app.openapi_schema = schema
    return schema
