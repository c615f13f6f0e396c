"""Typed dependencies: what a route needs from the running server, declared in its signature
(``service: Executions``) instead of read from ``request.app.state``.

The application's lifespan (server/app.py) puts these objects on the state; this module is the
one place that reads them, so a route names its service by type and a test can replace one with
``app.dependency_overrides``. ``Caller`` is who the request speaks for (server/auth.py checks
the token)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from nbplane.apis.service import ExecutionService
from nbplane.auth.admin import AuthAdmin
from nbplane.auth.authenticators.base import Presented
from nbplane.auth.logins import Logins
from nbplane.auth.models import CSRF_HEADER, DescribeCaller
from nbplane.auth.service import AuthService
from nbplane.deployments.context import ExecutionContextService
from nbplane.deployments.service import DeploymentService
from nbplane.errors import Forbidden, Unauthorized
from nbplane.server.auth import (
    COOKIE,
    NO_AUTH_CALLER,
    SAFE_METHODS,
    Bearer,
    TokenCheck,
)
from nbplane.sessions.connections import ConnectionService
from nbplane.sessions.service import SessionService
from nbplane.settings import Settings


def on_app(attribute: str) -> Callable[[HTTPConnection], Any]:
    """A dependency returning what the lifespan put on ``app.state`` under ``attribute``; the
    ``Annotated`` alias beside it gives routes its type."""

    # async: FastAPI runs a plain function in a worker thread, a hop per request for a getattr
    async def dependency(connection: HTTPConnection) -> Any:  # a request or a WebSocket
        return getattr(connection.app.state, attribute)

    dependency.__name__ = attribute
    return dependency


token_check = on_app("token_check")
Auth = Annotated[TokenCheck, Depends(token_check)]

logins = on_app("logins")
ServerLogins = Annotated[Logins, Depends(logins)]

auth_service = on_app("auth_service")
AuthUsers = Annotated[AuthService, Depends(auth_service)]

execution_service = on_app("service")
Executions = Annotated[ExecutionService, Depends(execution_service)]

deployment_service = on_app("deployments")
Deployments = Annotated[DeploymentService, Depends(deployment_service)]

execution_context = on_app("execution_context")
ExecutionContext = Annotated[ExecutionContextService, Depends(execution_context)]

session_service = on_app("sessions")
Sessions = Annotated[SessionService, Depends(session_service)]


async def connection_service(sessions: Sessions) -> ConnectionService:
    return sessions.connections


Connections = Annotated[ConnectionService, Depends(connection_service)]


async def settings(deployments: Deployments) -> Settings:
    """The settings the server started with."""
    return deployments.settings


ServerSettings = Annotated[Settings, Depends(settings)]


def presented(connection: HTTPConnection) -> Presented:
    """What the request shows an authenticator."""
    return Presented(
        headers=connection.headers,
        cookies=connection.cookies,
        client=connection.client.host if connection.client else None,
    )


def credentials(
    connection: HTTPConnection, auth: TokenCheck, logins: Logins
) -> tuple[DescribeCaller, bool]:
    """Who the bearer token, the signed-in browser's cookie, or else the request itself (by the
    authenticator's means: a gateway's header, an application's cookie) speaks for (user,
    admin, teams), and whether a browser's ambient credential said so (a request or a WebSocket
    alike). A request carrying the authenticator's header from where it may not come from is
    refused whatever else it carries."""
    if not auth.enabled:
        return NO_AUTH_CALLER, False
    shown = presented(connection)
    authenticator = logins.authenticator
    authenticator.screen(shown)
    token, field = token_of(connection)
    if token is not None:
        return auth.authenticate(token, field), field == "cookie"
    identity = authenticator.identify(shown) if authenticator.identifies_requests else None
    if identity is not None:
        return logins.caller(identity), True
    raise Unauthorized(
        "this endpoint needs a bearer token (Authorization: Bearer <token>) or a signed-in "
        "browser; create a token with `nbplane token create NAME`",
        field="authorization",
    )


def token_of(connection: HTTPConnection) -> tuple[str | None, str]:
    """The bearer token, else the signed-in browser's cookie, and which of the two it is."""
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), "authorization"
    return connection.cookies.get(COOKIE) or None, "cookie"


def known_credentials(
    connection: HTTPConnection, auth: TokenCheck, logins: Logins
) -> tuple[DescribeCaller, bool] | None:
    """What :func:`credentials` answers, when that needs no lookup (no authentication, or a
    token checked moments ago); None when it does."""
    if not auth.enabled:
        return NO_AUTH_CALLER, False
    logins.authenticator.screen(presented(connection))
    token, field = token_of(connection)
    found = auth.cached(token) if token is not None else None
    return None if found is None else (found, field == "cookie")


async def caller(
    request: Request, auth: Auth, logins: ServerLogins, _bearer: Bearer = None
) -> DescribeCaller:
    """Who the request speaks for; a signed-in browser's change needs the CSRF header too.
    Kept on the request for its access log line. On the event loop when the caller is known
    already; a lookup (the database, an application) goes to a worker thread."""
    known = known_credentials(request, auth, logins)
    if known is None:
        known = await asyncio.to_thread(credentials, request, auth, logins)
    found, by_cookie = known
    unsafe = request.method not in SAFE_METHODS
    if by_cookie and unsafe and not request.headers.get(CSRF_HEADER, "").strip():
        raise Forbidden(
            f"a signed-in browser's {request.method} needs the {CSRF_HEADER} header that the "
            "nbplane page sends; a request from another site cannot use the sign-in (nor a "
            "gateway's or an application's sign-in: log in for a token for scripts)",
            field=CSRF_HEADER.lower(),
        )
    request.state.user = found.user  # for its access log line
    return found


Caller = Annotated[DescribeCaller, Depends(caller)]


async def auth_admin(users: AuthUsers, who: Caller, auth: Auth) -> AuthAdmin:
    """Users, teams and tokens as the caller may manage them."""
    return AuthAdmin(users, who, auth.forget)


ManageAsCaller = Annotated[AuthAdmin, Depends(auth_admin)]
