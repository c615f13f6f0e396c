"""``/api/v1/auth``: logging in without a token yet. Thin: the rules live in auth.oauth."""

from __future__ import annotations

from fastapi import APIRouter, Request

from nbplane.auth.models import DescribeOAuth, DescribeOAuthLogin, ExchangeOAuthToken
from nbplane.auth.oauth import oauth_config, oauth_login
from nbplane.server.errors import responses
from nbplane.settings import Settings

router = APIRouter(prefix="/api/v1/auth")


def settings(request: Request) -> Settings:
    """The settings the server started with."""
    found: Settings = request.app.state.control.settings
    return found


@router.get(
    "/oauth",
    summary="The OAuth2 provider to log in with; needs no token",
    responses=responses(404),
)
def get_oauth(request: Request) -> DescribeOAuth:
    return oauth_config(settings(request))


@router.post(
    "/oauth/token",
    status_code=201,
    summary="Trade the provider's access token for a new nbplane token; needs no token",
    responses=responses(401, 404),
)
def exchange_oauth_token(request: Request, body: ExchangeOAuthToken) -> DescribeOAuthLogin:
    return oauth_login(request.app.state.auth_service, settings(request), body)
