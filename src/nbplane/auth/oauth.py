"""OAuth2 login: the server asks its configured provider's userinfo endpoint whom an access
token belongs to, and answers with a token of nbplane's own, so every other request keeps
using nbplane's revocable tokens and the provider is only needed at login."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from nbplane.auth.authenticators.base import Identity
from nbplane.auth.logins import Logins, teams_of
from nbplane.auth.models import DescribeLogin, DescribeOAuth, ExchangeOAuthToken
from nbplane.errors import ConfigError, NotFound, Unauthorized

if TYPE_CHECKING:
    from nbplane.settings import Settings

USERINFO_TIMEOUT = httpx.Timeout(15.0, connect=10.0)
FALLBACK_USERNAME_CLAIM = "sub"
REQUIRED_SETTINGS = (
    "oauth_authorize_url",
    "oauth_token_url",
    "oauth_userinfo_url",
    "oauth_client_id",
)


def oauth_config(settings: Settings) -> DescribeOAuth:
    missing = [name for name in REQUIRED_SETTINGS if not getattr(settings, name)]
    if missing:
        variables = ", ".join(f"NBPLANE_{name.upper()}" for name in missing)
        raise NotFound(
            f"OAuth login is not configured on this server ({variables} not set); log in with "
            "a token from `nbplane token create` instead",
            field="oauth",
        )
    assert settings.oauth_authorize_url and settings.oauth_token_url and settings.oauth_client_id
    return DescribeOAuth(
        authorize_url=settings.oauth_authorize_url,
        token_url=settings.oauth_token_url,
        client_id=settings.oauth_client_id,
        scopes=settings.oauth_scopes,
    )


def oauth_login(logins: Logins, settings: Settings, body: ExchangeOAuthToken) -> DescribeLogin:
    """The provider's user as an nbplane user (made on first login), their teams set from the
    groups claim when it is there, and a new token of theirs."""
    oauth_config(settings)
    assert settings.oauth_userinfo_url
    claims = userinfo(settings.oauth_userinfo_url, body.access_token)
    groups = claims.get(settings.oauth_groups_claim)
    identity = Identity(
        user=claims.get(settings.oauth_username_claim) or claims.get(FALLBACK_USERNAME_CLAIM) or "",
        groups=None if groups is None else tuple(teams_of(groups)),
    )
    return logins.log_in(identity, body.name)


def userinfo(url: str, access_token: str) -> dict[str, Any]:
    """The provider's claims about the token's owner; a token it refuses is ours to refuse."""
    try:
        response = httpx.get(
            url, headers={"Authorization": f"Bearer {access_token}"}, timeout=USERINFO_TIMEOUT
        )
    except httpx.HTTPError as exc:
        raise ConfigError(
            f"cannot reach the OAuth provider's userinfo endpoint {url}: "
            f"{str(exc) or type(exc).__name__}",
            field="oauth_userinfo_url",
        ) from None
    if response.status_code in (401, 403):
        raise Unauthorized(
            f"the OAuth provider refused the access token ({response.status_code} from its "
            "userinfo endpoint); log in again",
            field="access_token",
        )
    try:
        claims = response.raise_for_status().json()
    except (httpx.HTTPStatusError, ValueError):
        claims = None
    if not isinstance(claims, dict):
        raise ConfigError(
            f"the OAuth provider's userinfo endpoint {url} answered {response.status_code} "
            "without a JSON object of claims",
            field="oauth_userinfo_url",
        )
    return claims
