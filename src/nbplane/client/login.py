"""Logging in to an nbplane server, the same for ``nbplane login`` and the Jupyter extension:
the token is checked with the server before it is kept in the credentials file."""

from __future__ import annotations

from nbplane.auth.models import DescribeCaller, DescribeOAuthLogin
from nbplane.client._client import NbplaneClient
from nbplane.client.credentials import SaveLogin, normalize_url, save_login


def log_in(url: str, token: str) -> DescribeCaller:
    """Who the token speaks for at ``url``; both are saved once the server has said so."""
    url, token = normalize_url(url), token.strip()
    with NbplaneClient(url, token) as client:
        caller = client.me()
    save_login(SaveLogin(url=url, token=token))
    return caller


def log_in_with_oauth(url: str, access_token: str) -> DescribeOAuthLogin:
    """Trade the OAuth provider's access token for a new nbplane token of its user, and save
    that."""
    url = normalize_url(url)
    with NbplaneClient(url, None) as client:
        answer = client.oauth_login(access_token)
    save_login(SaveLogin(url=url, token=answer.token))
    return answer
