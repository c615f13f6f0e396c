"""Logging in to an nbplane server, the same for ``nbplane login`` and the Jupyter extension:
the token is checked with the server before it is kept in the credentials file."""

from __future__ import annotations

from contextlib import suppress

from nbplane.auth.models import DescribeCaller, DescribeLogin, ExchangeOAuthToken
from nbplane.client._client import NbplaneClient
from nbplane.client.credentials import SaveLogin, load_login, normalize_url, save_login
from nbplane.errors import NbplaneError


def log_in(url: str, token: str) -> DescribeCaller:
    """Who the token speaks for at ``url``; both are saved once the server has said so."""
    url, token = normalize_url(url), token.strip()
    with NbplaneClient(url, token) as client:
        caller = client.me()
    save_login(SaveLogin(url=url, token=token))
    return caller


def log_in_with_oauth(url: str, tokens: ExchangeOAuthToken) -> DescribeLogin:
    """Trade the OpenID provider's tokens of a login for a new nbplane token of its user, and
    save that."""
    url = normalize_url(url)
    with NbplaneClient(url, None) as client:
        answer = client.oauth_login(tokens)
    save_login(SaveLogin(url=url, token=answer.token))
    return answer


def log_in_by_request(url: str, source_token: str | None) -> DescribeLogin:
    """A new nbplane token for whom the request identifies to the server's authenticator (a
    gateway's header added on the way, or ``source_token`` an application knows), saved."""
    url = normalize_url(url)
    with NbplaneClient(url, None) as client:
        answer = client.request_login(source_token)
    save_login(SaveLogin(url=url, token=answer.token))
    return answer


def log_out() -> None:
    """Ask the saved login's server to end it (revoking its token if a login made it); a
    server that cannot be reached or refuses the token ends nothing more."""
    saved = load_login()
    if saved is None:
        return
    with suppress(NbplaneError), NbplaneClient(saved.url, saved.token) as client:
        client.logout()
