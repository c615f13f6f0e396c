"""What nbplane asks a session's Jupyter server itself: ``GET {url}api/status`` with the
server's token, for whether it answers (a launcher's ``ready``) and for its own last activity
(the plane's culling)."""

from __future__ import annotations

from datetime import UTC, datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx


def session_client(timeout: httpx.Timeout | float) -> httpx.AsyncClient:
    """A client for sessions' servers: reached directly (no proxies from the environment), and
    their login cookies never kept (they would pile up, and authenticate later requests)."""
    return httpx.AsyncClient(
        timeout=timeout,
        trust_env=False,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )


async def server_status(http: httpx.AsyncClient, url: str, token: str) -> httpx.Response | None:
    """The server's answer to ``api/status`` with its token; None if it cannot be reached."""
    try:
        return await http.get(
            f"{url.rstrip('/')}/api/status", headers={"Authorization": f"token {token}"}
        )
    except httpx.HTTPError:
        return None


async def answers(http: httpx.AsyncClient, url: str, token: str) -> bool:
    """The server itself answers its API with the token."""
    response = await server_status(http, url, token)
    return response is not None and response.status_code == 200


async def last_activity(http: httpx.AsyncClient, url: str, token: str) -> datetime | None:
    """The server's own last activity (kernels, terminals, API calls); None if it does not
    say."""
    response = await server_status(http, url, token)
    if response is None or not response.is_success:
        return None
    try:
        stamp = datetime.fromisoformat(str(response.json()["last_activity"]))
    except (ValueError, KeyError, TypeError):
        return None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp
