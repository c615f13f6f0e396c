"""``/api/v1/auth``: logging in without a token yet. Thin: the rules live in auth.oauth."""

from __future__ import annotations

from fastapi import APIRouter

from nbplane.auth.models import DescribeOAuth, DescribeOAuthLogin, ExchangeOAuthToken
from nbplane.auth.oauth import oauth_config, oauth_login
from nbplane.server.deps import AuthUsers, ServerSettings
from nbplane.server.errors import responses

router = APIRouter(prefix="/api/v1/auth")


@router.get(
    "/oauth",
    summary="The OAuth2 provider to log in with; needs no token",
    responses=responses(404),
)
def get_oauth(settings: ServerSettings) -> DescribeOAuth:
    return oauth_config(settings)


@router.post(
    "/oauth/token",
    status_code=201,
    summary="Trade the provider's access token for a new nbplane token; needs no token",
    responses=responses(401, 404, 409),
)
def exchange_oauth_token(
    users: AuthUsers, settings: ServerSettings, body: ExchangeOAuthToken
) -> DescribeOAuthLogin:
    return oauth_login(users, settings, body)
