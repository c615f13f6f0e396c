"""Bearer tokens: every endpoint but health and the logins of ``/api/v1/auth`` needs one,
unless the server runs with --no-auth.

A browser signs in once (``POST /api/v1/auth/sign-in``, see routes/web.py): the token then
travels in an HttpOnly, SameSite=Strict cookie that the page's script cannot read. A request
that changes something with that cookie must also carry the ``X-Nbplane-Csrf`` header, which
only a script of the same origin can add (a cross-site form or link cannot), so the cookie is
never enough on its own."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from nbplane.auth.models import DescribeCaller
from nbplane.errors import Forbidden, Unauthorized

CACHE_SECONDS = 5.0
"""A token checked within this time is not looked up again; a revoke takes effect after it (an
expiry takes effect on time: a cached token is not kept past it)."""

COOKIE = "nbplane_token"
"""The signed-in browser's token (HttpOnly, SameSite=Strict, Secure over https)."""
CSRF_HEADER = "X-Nbplane-Csrf"
"""Any non-empty value: a cookie-authenticated request that changes something needs it."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

NO_AUTH_CALLER = DescribeCaller(user="local", admin=True, teams=[], token=None)
"""Who calls a server started with ``--no-auth`` (loopback only): everyone, as an admin."""


class SignIn(BaseModel):
    """Body of ``POST /api/v1/auth/sign-in``: the token a browser keeps in its cookie."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(
        min_length=1, max_length=512, description="An nbplane token (`nbplane token create`)."
    )


Bearer = Annotated[
    HTTPAuthorizationCredentials | None,
    Security(
        HTTPBearer(
            auto_error=False,
            description="An nbplane token (`nbplane token create`); a signed-in browser sends "
            "its cookie instead.",
        )
    ),
]
"""Declares the bearer token in the OpenAPI document (``caller`` reads the header itself, so
that the cookie is an alternative), which then lists 401 and 403 for the operation."""


def caller(request: Request, _bearer: Bearer = None) -> DescribeCaller:
    """Who the bearer token, or the signed-in browser's cookie, speaks for (user, admin, teams)."""
    if not request.app.state.auth:
        return NO_AUTH_CALLER
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return authenticate(request, token.strip(), "authorization")
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        raise Unauthorized(
            "this endpoint needs a bearer token (Authorization: Bearer <token>) or a signed-in "
            "browser; create a token with `nbplane token create NAME`",
            field="authorization",
        )
    found = authenticate(request, cookie, "cookie")
    if request.method not in SAFE_METHODS and not request.headers.get(CSRF_HEADER, "").strip():
        raise Forbidden(
            f"a signed-in browser's {request.method} needs the {CSRF_HEADER} header that the "
            "nbplane page sends; a request from another site cannot use the sign-in",
            field=CSRF_HEADER.lower(),
        )
    return found


def authenticate(request: Request, token: str, field: str) -> DescribeCaller:
    """The live token's caller, looked up at most every ``CACHE_SECONDS`` and never trusted
    from the cache past the token's expiry."""
    state = request.app.state
    cached = state.token_cache.get(token)
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]  # type: ignore[no-any-return]
    found: DescribeCaller | None = state.auth_service.authenticate(token)
    what = {"authorization": "the bearer token", "cookie": "the signed-in token"}.get(
        field, "the token"
    )
    if found is None:
        raise Unauthorized(f"{what} is unknown or revoked", field=field)
    keep = CACHE_SECONDS
    if found.token_expires_at is not None:
        left = (found.token_expires_at - datetime.now(UTC)).total_seconds()
        if left <= 0:
            raise Unauthorized(
                f"{what} expired at {found.token_expires_at:%Y-%m-%d %H:%M:%S} UTC; create a "
                "new one with `nbplane token create NAME --expires-in 30d`",
                field=field,
            )
        keep = min(keep, left)
    if len(state.token_cache) > 1024:  # bounded: old entries go, they are only a shortcut
        state.token_cache.clear()
    state.token_cache[token] = (found, time.monotonic() + keep)
    return found


Caller = Annotated[DescribeCaller, Depends(caller)]
