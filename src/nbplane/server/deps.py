"""Typed dependencies: what a route needs from the running server, declared in its signature
(``service: Executions``) instead of read from ``request.app.state``.

The application's lifespan (server/app.py) puts these objects on the state; this module is the
one place that reads them, so a route names its service by type and a test can replace one with
``app.dependency_overrides``. ``Caller`` is who the request speaks for (server/auth.py checks
the token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from nbplane.apis.service import ExecutionService
from nbplane.auth.models import DescribeCaller
from nbplane.auth.service import AuthService
from nbplane.deployments.context import ExecutionContextService
from nbplane.deployments.service import DeploymentService
from nbplane.errors import Forbidden, Unauthorized
from nbplane.server.auth import (
    COOKIE,
    CSRF_HEADER,
    NO_AUTH_CALLER,
    SAFE_METHODS,
    Authenticator,
    Bearer,
)
from nbplane.sessions.connections import ConnectionService
from nbplane.sessions.service import SessionService
from nbplane.settings import Settings
from nbplane.store import Store


def store(request: Request) -> Store:
    found: Store = request.app.state.store
    return found


ServerStore = Annotated[Store, Depends(store)]


def authenticator(request: Request) -> Authenticator:
    found: Authenticator = request.app.state.authenticator
    return found


Auth = Annotated[Authenticator, Depends(authenticator)]


def auth_service(request: Request) -> AuthService:
    service: AuthService = request.app.state.auth_service
    return service


AuthUsers = Annotated[AuthService, Depends(auth_service)]


def execution_service(request: Request) -> ExecutionService:
    found: ExecutionService = request.app.state.service
    return found


Executions = Annotated[ExecutionService, Depends(execution_service)]


def deployment_service(request: Request) -> DeploymentService:
    found: DeploymentService = request.app.state.deployments
    return found


Deployments = Annotated[DeploymentService, Depends(deployment_service)]


def execution_context(request: Request) -> ExecutionContextService:
    found: ExecutionContextService = request.app.state.execution_context
    return found


ExecutionContext = Annotated[ExecutionContextService, Depends(execution_context)]


def session_service(request: Request) -> SessionService:
    found: SessionService = request.app.state.sessions
    return found


Sessions = Annotated[SessionService, Depends(session_service)]


def connection_service(sessions: Sessions) -> ConnectionService:
    return sessions.connections


Connections = Annotated[ConnectionService, Depends(connection_service)]


def settings(deployments: Deployments) -> Settings:
    """The settings the server started with."""
    return deployments.settings


ServerSettings = Annotated[Settings, Depends(settings)]


def caller(request: Request, auth: Auth, _bearer: Bearer = None) -> DescribeCaller:
    """Who the bearer token, or the signed-in browser's cookie, speaks for (user, admin, teams)."""
    if not auth.enabled:
        return NO_AUTH_CALLER
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return auth.authenticate(token.strip(), "authorization")
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        raise Unauthorized(
            "this endpoint needs a bearer token (Authorization: Bearer <token>) or a signed-in "
            "browser; create a token with `nbplane token create NAME`",
            field="authorization",
        )
    found = auth.authenticate(cookie, "cookie")
    if request.method not in SAFE_METHODS and not request.headers.get(CSRF_HEADER, "").strip():
        raise Forbidden(
            f"a signed-in browser's {request.method} needs the {CSRF_HEADER} header that the "
            "nbplane page sends; a request from another site cannot use the sign-in",
            field=CSRF_HEADER.lower(),
        )
    return found


Caller = Annotated[DescribeCaller, Depends(caller)]
