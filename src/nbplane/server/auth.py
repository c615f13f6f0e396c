"""Bearer tokens: every endpoint but health and the logins of ``/api/v1/auth`` needs one,
unless the server runs with --no-auth, or the configured authenticator finds the caller in the
request itself (a gateway's header, an application's session cookie: see deps.credentials).

A browser signs in once (``POST /api/v1/auth/sign-in``, see routes/web.py): the token then
travels in an HttpOnly, SameSite=Strict cookie that the page's script cannot read. A request
that changes something with that cookie must also carry the ``X-Nbplane-Csrf`` header, which
only a script of the same origin can add (a cross-site form or link cannot), so the cookie is
never enough on its own."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from nbplane._time import now
from nbplane.auth.models import DescribeCaller
from nbplane.auth.service import AuthService
from nbplane.errors import Unauthorized

CACHE_SECONDS = 5.0
"""A token checked within this time is not looked up again; a revoke takes effect after it (an
expiry takes effect on time: a cached token is not kept past it)."""

COOKIE = "nbplane_token"
"""The signed-in browser's token (HttpOnly, SameSite=Strict, Secure over https)."""
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
"""Declares the bearer token in the OpenAPI document (``deps.caller`` reads the header itself, so
that the cookie is an alternative), which then lists 401 and 403 for the operation."""


class TokenCheck:
    """The server's check of nbplane's own tokens: off with --no-auth, else each token looked
    up at most every ``CACHE_SECONDS`` and never trusted from the cache past its expiry. (The
    authenticator, nbplane.auth.authenticators, says who a person is; a login through it ends
    in a token this checks.)"""

    def __init__(
        self,
        service: AuthService,
        *,
        enabled: bool,
        renew: Callable[[DescribeCaller], None] | None = None,
    ) -> None:
        self.service = service
        self.enabled = enabled
        self.renew = renew
        """Renews the login behind a token when due (raising Unauthorized when it ended), at
        each lookup, not from the cache."""
        self._cache: dict[str, tuple[DescribeCaller, float]] = {}

    def cached(self, token: str) -> DescribeCaller | None:
        """The caller of ``token`` if it was checked within ``CACHE_SECONDS`` (and is not past
        its expiry): known without a lookup, so without leaving the event loop."""
        cached = self._cache.get(token)
        return cached[0] if cached is not None and cached[1] > time.monotonic() else None

    def authenticate(self, token: str, field: str) -> DescribeCaller:
        """The live token's caller; ``field`` names where it came from in the error."""
        cached = self.cached(token)
        if cached is not None:
            return cached
        found = self.service.authenticate(token)
        what = {"authorization": "the bearer token", "cookie": "the signed-in token"}.get(
            field, "the token"
        )
        if found is None:
            raise Unauthorized(f"{what} is unknown or revoked", field=field)
        keep = CACHE_SECONDS
        if found.token_expires_at is not None:
            left = (found.token_expires_at - now()).total_seconds()
            if left <= 0:
                raise Unauthorized(
                    f"{what} expired at {found.token_expires_at:%Y-%m-%d %H:%M:%S} UTC; create a "
                    "new one with `nbplane token create NAME --expires-in 30d`",
                    field=field,
                )
            keep = min(keep, left)
        if self.renew is not None:
            self.renew(found)
        if len(self._cache) > 1024:  # bounded: old entries go, they are only a shortcut
            self._cache.clear()
        self._cache[token] = (found, time.monotonic() + keep)
        return found

    def forget(self, user: str | None, token: str | None) -> None:
        """Drop what the cache knows of ``user``'s tokens or of the token named ``token``: their
        rights changed, the next request looks them up again."""
        for secret, (found, _) in list(self._cache.items()):
            if (user is not None and found.user == user) or (
                token is not None and found.token == token
            ):
                self._cache.pop(secret, None)

    def revoke_named(self, name: str) -> None:
        """Revoke the token named ``name`` at once, cache included: a login ends."""
        self.service.revoke_token(name)
        self.forget(None, name)

    def name_of(self, token: str) -> str | None:
        """The name of the live token with this secret, if any."""
        found = self.service.authenticate(token)
        return found.token if found is not None else None
