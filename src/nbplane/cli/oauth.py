"""The browser half of ``nbplane login --oauth``: OAuth2's authorization code flow with PKCE
(RFC 7636) as a native app does it, the redirect caught on a loopback port (RFC 8252)."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import queue
import secrets
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from rich.console import Console
from rich.markup import escape

from nbplane.control.oauth import DescribeOAuth
from nbplane.errors import ConfigError, Unauthorized

CALLBACK_PATH = "/callback"
TOKEN_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
VERIFIER_BYTES = 48
"""Random bytes of the PKCE code verifier: 64 characters, within RFC 7636's 43 to 128."""
PAGE = (
    b"<!doctype html><title>nbplane login</title><p>nbplane received the login. You can close "
    b"this tab; the terminal tells how it went.</p>"
)


class _CallbackServer(HTTPServer):
    """A loopback listener that hands the provider's redirect to the waiting login."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Callback)
        self.received: queue.Queue[dict[str, str]] = queue.Queue()

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.server_port}{CALLBACK_PATH}"


class _Callback(BaseHTTPRequestHandler):
    server: _CallbackServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != CALLBACK_PATH:
            self.send_error(404)  # e.g. the browser asking for a favicon
            return
        query = parse_qs(parts.query)
        self.server.received.put({key: values[0] for key, values in query.items()})
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the terminal shows only the outcome."""


def authorize(provider: DescribeOAuth, timeout: float) -> str:
    """The provider's access token, once the person has logged in in their browser."""
    for url in (provider.authorize_url, provider.token_url):
        _check_transport(url)
    verifier = secrets.token_urlsafe(VERIFIER_BYTES)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    state = secrets.token_urlsafe(24)
    with _CallbackServer() as listener:
        threading.Thread(target=listener.serve_forever, daemon=True).start()
        redirect_uri = listener.redirect_uri
        try:
            login_url = httpx.URL(provider.authorize_url).copy_merge_params(
                {
                    "response_type": "code",
                    "client_id": provider.client_id,
                    "redirect_uri": redirect_uri,
                    "scope": provider.scopes,
                    "state": state,
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                }
            )
            Console().print(
                "Log in in your browser; if it does not open, visit:\n" + escape(str(login_url)),
                highlight=False,
                soft_wrap=True,
            )
            webbrowser.open(str(login_url))
            redirect = _wait(listener, timeout)
        finally:
            listener.shutdown()
    code = _check_redirect(redirect, state)
    return _exchange(provider, code, verifier, redirect_uri)


def _check_transport(url: str) -> None:
    """Codes and tokens travel over HTTPS, or over plain HTTP to loopback only (RFC 8252)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and parts.hostname:
        if parts.hostname == "localhost":
            return
        try:
            if ipaddress.ip_address(parts.hostname).is_loopback:
                return
        except ValueError:
            pass
    raise ConfigError(
        f"the OAuth provider's endpoint {url} is not https; nbplane sends a login over plain "
        "http only to loopback",
        url=url,
    )


def _wait(listener: _CallbackServer, timeout: float) -> dict[str, str]:
    try:
        return listener.received.get(timeout=timeout)
    except queue.Empty:
        raise Unauthorized(
            f"no login came back from the browser within {timeout:g} s; run `nbplane login "
            "--oauth` again (--timeout gives more time)",
            field="timeout",
        ) from None


def _check_redirect(redirect: dict[str, str], state: str) -> str:
    """The code from the provider's redirect, if it is the answer to this login."""
    if not secrets.compare_digest(redirect.get("state", ""), state):
        raise Unauthorized(
            "the browser came back with another login's state (a stale or forged redirect); "
            "run `nbplane login --oauth` again",
            field="state",
        )
    if "error" in redirect:
        raise Unauthorized(f"the OAuth provider refused the login: {_reason(redirect)}")
    code = redirect.get("code")
    if not code:
        raise Unauthorized("the browser came back without an authorization code", field="code")
    return code


def _exchange(provider: DescribeOAuth, code: str, verifier: str, redirect_uri: str) -> str:
    """Trade the code for an access token; only this process knows the verifier it needs."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": provider.client_id,
        "code_verifier": verifier,
    }
    try:
        response = httpx.post(
            provider.token_url,
            data=form,
            headers={"Accept": "application/json"},
            timeout=TOKEN_TIMEOUT,
        )
        body = response.json()
    except httpx.HTTPError as exc:
        raise ConfigError(
            f"cannot reach the OAuth provider's token endpoint {provider.token_url}: "
            f"{str(exc) or type(exc).__name__}",
            url=provider.token_url,
        ) from None
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        raise Unauthorized(f"the OAuth provider refused the login: {_reason(body)}")
    token = body.get("access_token") if isinstance(body, dict) else None
    if not response.is_success or not isinstance(token, str) or not token:
        raise ConfigError(
            f"the OAuth provider's token endpoint {provider.token_url} answered "
            f"{response.status_code} without an access token",
            url=provider.token_url,
        )
    return token


def _reason(answer: dict[str, Any]) -> str:
    """OAuth2's error code and, when given, its description."""
    description = answer.get("error_description")
    return f"{answer['error']}: {description}" if description else str(answer["error"])
