"""Who the Jupyter server talks to the nbplane server as. The token stays on the Jupyter
server, in the credentials file ``nbplane login`` writes (or, inside an nbplane session, in
``NBPLANE_URL``/``NBPLANE_TOKEN``); the browser only ever learns whether it is logged in."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from nbplane.auth.models import DescribeCaller, DescribeLogin
from nbplane.auth.pkce import PkceLogin
from nbplane.client import NbplaneClient, load_login, log_in_with_oauth, normalize_url
from nbplane.client import log_in as log_in_to_server
from nbplane.errors import ConfigError, NbplaneError, Unauthorized
from nbplane.settings import get_settings

LOGIN_FIRST = "log in to an nbplane server first (nbplane menu > Login)"
OAUTH_PENDING_SECONDS = 600.0
"""How long a browser may take to come back from the OAuth provider."""


def in_session() -> bool:
    """Inside an nbplane session the server put its URL and a token in the environment."""
    settings = get_settings()
    return bool(settings.url and settings.token)


def remote_client() -> NbplaneClient:
    """The client of the logged-in nbplane server; refused (401) when there is none."""
    try:
        return NbplaneClient.from_credentials()
    except ConfigError as exc:
        if exc.fields.get("field") in ("url", "token"):
            raise Unauthorized(f"{LOGIN_FIRST}: {exc.message}", field="login") from None
        raise


def describe_login(url: str | None = None) -> dict[str, Any]:
    """What the menu shows: logged in or not, as whom, and whether OAuth login is offered
    (at ``url``, else at the server logged in to)."""
    settings = get_settings()
    saved = load_login()
    server = normalize_url(settings.url) if settings.url else saved.url if saved else None
    answer: dict[str, Any] = {
        "logged_in": False,
        "server_url": server,
        "user": None,
        "admin": False,
        "teams": [],
        "in_session": in_session(),
        "oauth_available": False,
        "message": None,
    }
    if server is not None:
        try:
            with remote_client() as client:
                caller = client.me()
            answer.update(logged_in=True, user=caller.user, admin=caller.admin, teams=caller.teams)
        except Unauthorized as exc:
            answer["message"] = exc.message
        except NbplaneError as exc:  # unreachable: the login is kept, the menu says why
            answer.update(logged_in=True, message=exc.message)
    target = normalize_url(url) if url else server
    if target is not None:
        answer["oauth_available"] = oauth_available(target)
    return answer


def oauth_available(url: str) -> bool:
    try:
        with NbplaneClient(url, None) as client:
            client.oauth_config()
    except NbplaneError:
        return False
    return True


def log_in(url: str, token: str) -> DescribeCaller:
    """Check the token with the server, then keep it where ``nbplane login`` does."""
    url = normalize_url(url)
    if not token.strip():
        raise ConfigError(
            "the token is empty: paste a token from `nbplane token create`", field="token"
        )
    return log_in_to_server(url, token)


@dataclass
class _Pending:
    url: str
    login: PkceLogin
    started: float = field(default_factory=time.monotonic)


class OAuthLogins:
    """OAuth logins between ``oauth/start`` and the browser's return to ``oauth/callback``;
    the PKCE verifier never leaves this process."""

    def __init__(self) -> None:
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    def start(self, url: str, redirect_uri: str) -> str:
        """The provider's login address for the browser."""
        url = normalize_url(url)
        with NbplaneClient(url, None) as client:
            provider = client.oauth_config()
        login = PkceLogin(provider, redirect_uri)
        with self._lock:
            now = time.monotonic()
            for state in [
                s for s, p in self._pending.items() if now - p.started > OAUTH_PENDING_SECONDS
            ]:
                del self._pending[state]
            self._pending[login.state] = _Pending(url, login)
        return login.authorize_url

    def finish(self, redirect: dict[str, str]) -> DescribeLogin:
        """Trade the browser's code for the provider's tokens, those for an nbplane token, and
        keep it."""
        with self._lock:
            pending = self._pending.pop(redirect.get("state", ""), None)
        if pending is None:
            raise Unauthorized(
                "this login is unknown or expired (a stale or forged redirect); log in again",
                field="state",
            )
        return log_in_with_oauth(pending.url, pending.login.finish(redirect))
