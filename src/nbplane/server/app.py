"""The FastAPI application: store, notebook catalog, an in-process worker, routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from nbplane import __version__
from nbplane.apis.catalog import ApiCatalog
from nbplane.apis.service import ExecutionService
from nbplane.apis.worker import Worker
from nbplane.auth.service import AuthService
from nbplane.deployments.context import ExecutionContextService
from nbplane.deployments.reconciler import DeploymentReconciler
from nbplane.deployments.service import DeploymentService
from nbplane.server import errors
from nbplane.server.auth import Authenticator
from nbplane.server.door import Door
from nbplane.server.routes import (
    apis,
    auth,
    connections,
    context,
    deployments,
    jupyrest,
    proxy,
    sessions,
    web,
)
from nbplane.sessions.launchers import launcher_named
from nbplane.sessions.reconciler import SessionReconciler
from nbplane.sessions.service import SessionService
from nbplane.settings import get_settings
from nbplane.store import open_store


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


def create_app(config: ServerConfig) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(config.store_url)
        catalog = ApiCatalog(config.notebooks_dir)
        worker = None
        if config.run_worker:
            worker = Worker(
                store, catalog, concurrency=config.concurrency, pool_size=config.pool_size
            )
            await worker.start()
        app.state.store = store
        app.state.auth_service = AuthService(store)
        app.state.authenticator = Authenticator(app.state.auth_service, enabled=config.auth)
        app.state.service = ExecutionService(store, catalog, worker, config.cache_dir)
        settings = get_settings().model_copy(update={"store_url": config.store_url})
        app.state.deployments = DeploymentService(
            store, settings, settings.job_executor, config.public_url
        )
        app.state.execution_context = ExecutionContextService(store, settings)
        app.state.sessions = SessionService(
            store,
            settings,
            launcher_named(settings.session_launcher, settings),
            config.public_url,
            auth=config.auth,
        )
        app.state.proxy = proxy.SessionProxy()
        plane = DeploymentReconciler(app.state.deployments) if config.run_control else None
        if plane is not None:
            await plane.start()
        session_plane = (
            SessionReconciler(app.state.sessions.lifecycle) if config.run_control else None
        )
        if session_plane is not None:
            await session_plane.start()
        try:
            yield
        finally:
            if session_plane is not None:
                await session_plane.stop()
            if plane is not None:
                await plane.stop()
            if worker is not None:
                await worker.stop()
            await app.state.proxy.close()
            store.close()

    app = FastAPI(
        title="nbplane",
        version=__version__,
        description="Notebooks as REST APIs: each notebook's contract is its input and output.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(Door, limit=config.max_body_bytes, upload_limit=config.max_upload_bytes)

    @app.get("/health", tags=["health"], summary="Liveness; needs no token")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(apis.router, tags=["executions"])
    app.include_router(deployments.router, tags=["jobs"])
    app.include_router(context.router, tags=["execution"])
    app.include_router(auth.router, tags=["auth"])
    app.include_router(jupyrest.router)
    app.include_router(sessions.router, tags=["sessions"])
    app.include_router(connections.router, tags=["connections"])
    app.include_router(proxy.router)
    web.install(app)
    app.openapi = lambda: notebook_openapi(app)  # type: ignore[method-assign]
    return app


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
