"""Bearer tokens: every endpoint but health needs one, unless the server runs with --no-auth."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Request

from nbplane.errors import Unauthorized

CACHE_SECONDS = 5.0
"""A token checked within this time is not looked up again; a revoke takes effect after it."""


def caller(request: Request) -> str | None:
    """The token's name, or None when the server runs without auth."""
    state = request.app.state
    if not state.auth:
        return None
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
        return str(cached[0])
    name: str | None = state.store.tokens.authenticate(token)
    if name is None:
        raise Unauthorized("the bearer token is unknown or revoked", field="authorization")
    if len(state.token_cache) > 1024:  # bounded: old entries go, they are only a shortcut
        state.token_cache.clear()
    state.token_cache[token] = (name, time.monotonic() + CACHE_SECONDS)
    return name


Caller = Annotated[str | None, Depends(caller)]
