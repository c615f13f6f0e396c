"""Bearer tokens: every endpoint but health and the logins of ``/api/v1/auth`` needs one,
unless the server runs with --no-auth."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request

from nbplane.control.models import DescribeCaller
from nbplane.errors import Unauthorized

CACHE_SECONDS = 5.0
"""A token checked within this time is not looked up again; a revoke takes effect after it."""


NO_AUTH_CALLER = DescribeCaller(user="local", admin=True, teams=[], token=None)
"""Who calls a server started with ``--no-auth`` (loopback only): everyone, as an admin."""


def caller(request: Request) -> DescribeCaller:
    """Who the bearer token speaks for (user, admin, teams)."""
    state = request.app.state
    if not state.auth:
        return NO_AUTH_CALLER
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "this endpoint needs a bearer token (Authorization: Bearer <token>); "
            "create one with `nbplane token create NAME`",
            field="authorization",
        )
    token = token.strip()
    cached = state.token_cache.get(token)
    if cached is not None and cached[1] > time.monotonic():
        return cached[0]  # type: ignore[no-any-return]
    found: DescribeCaller | None = state.store.tokens.authenticate(token)
    if found is None:
        raise Unauthorized("the bearer token is unknown or revoked", field="authorization")
    if len(state.token_cache) > 1024:  # bounded: old entries go, they are only a shortcut
        state.token_cache.clear()
    state.token_cache[token] = (found, time.monotonic() + CACHE_SECONDS)
    return found


Caller = Annotated[DescribeCaller, Depends(caller)]
