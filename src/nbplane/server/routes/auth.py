"""``/api/v1/auth``: logging in without a token yet, through the server's authenticator, and
ending a login. Thin: the rules live in nbplane.auth (logins, authenticators, oauth)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request

from nbplane.auth.logins import Logins
from nbplane.auth.models import (
    CSRF_HEADER,
    DescribeAuthenticator,
    DescribeLogin,
    DescribeLogout,
    DescribeOAuth,
    ExchangeOAuthToken,
    LogIn,
)
from nbplane.errors import Forbidden, NotFound, Unauthorized
from nbplane.server.deps import Auth, Caller, ServerLogins, presented
from nbplane.server.errors import responses

if TYPE_CHECKING:
    from nbplane.auth.authenticators.oidc import OidcAuthenticator

router = APIRouter(prefix="/api/v1/auth")


@router.get("", summary="How people log in to this server; needs no token")
def get_authenticator(logins: ServerLogins) -> DescribeAuthenticator:
    authenticator = logins.authenticator
    return DescribeAuthenticator(
        name=authenticator.name,
        provider=authenticator.provider,
        browser_login=authenticator.browser_login,
        request_login=authenticator.identifies_requests,
    )


@router.post(
    "/login",
    status_code=201,
    summary="A new nbplane token for whom the request identifies by the server's authenticator "
    "(a gateway's header, an application's cookie or bearer token); needs no nbplane token",
    responses=responses(401, 403, 404, 409, 502),
)
def log_in(request: Request, logins: ServerLogins, body: LogIn) -> DescribeLogin:
    """Without a bearer token, what identifies the request is ambient (a gateway's sign-in, an
    application's cookie): the CSRF header shows a script of this origin (or a CLI) sent it,
    not another site's form."""
    authenticator = logins.authenticator
    identity = authenticator.identify(presented(request))
    if identity is None:
        raise Unauthorized(
            f"nothing in this request identifies anyone to this server's authenticator "
            f"({authenticator.name}); log in with a token from `nbplane token create`",
            field="authorization",
        )
    if "authorization" not in request.headers and not request.headers.get(CSRF_HEADER, "").strip():
        raise Forbidden(
            f"a login without a bearer token needs the {CSRF_HEADER} header (any value)",
            field=CSRF_HEADER.lower(),
        )
    return logins.log_in(identity, body.name)


@router.post(
    "/logout",
    summary="End the caller's login: its token is revoked if a login made it (a token from "
    "`nbplane token create` stays); says where a browser ends its login at the provider",
    responses=responses(401),
)
def log_out(who: Caller, auth: Auth, logins: ServerLogins) -> DescribeLogout:
    ended = who.token is not None and logins.is_login_token(who.token)
    if ended:
        assert who.token is not None
        auth.revoke_named(who.token)
    return DescribeLogout(revoked=ended, logout_url=logins.authenticator.logout_url(""))


@router.get(
    "/oauth",
    summary="The OpenID Connect provider a client logs in at itself (the CLI, the Jupyter "
    "extension); needs no token",
    responses=responses(404),
)
def get_oauth(logins: ServerLogins) -> DescribeOAuth:
    return openid(logins).describe()


@router.post(
    "/oauth/token",
    status_code=201,
    summary="Trade the provider's tokens of a login (access, ID, refresh) for a new nbplane "
    "token; needs no token",
    responses=responses(401, 404, 409, 502),
)
def exchange_oauth_token(logins: ServerLogins, body: ExchangeOAuthToken) -> DescribeLogin:
    return logins.log_in(openid(logins).identity_of(body), body.name)


def openid(logins: Logins) -> OidcAuthenticator:
    """The server's OpenID Connect authenticator, or a 404 that says how to log in instead."""
    # imported here: authlib, joserfc and cryptography only where OpenID Connect is used
    from nbplane.auth.authenticators.oidc import OidcAuthenticator

    authenticator = logins.authenticator
    if not isinstance(authenticator, OidcAuthenticator):
        raise NotFound(
            f"OAuth login is not configured on this server (its authenticator is "
            f"{authenticator.name}: NBPLANE_AUTHENTICATOR=oidc with NBPLANE_OIDC_ISSUER, or the "
            "NBPLANE_OAUTH_AUTHORIZE_URL, _TOKEN_URL, _USERINFO_URL and _CLIENT_ID of earlier "
            "versions); log in with a token from `nbplane token create` instead",
            field="oauth",
        )
    return authenticator
