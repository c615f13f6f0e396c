"""The client half of OpenID Connect's authorization code flow with PKCE (RFC 7636), on
authlib's OAuth2 pieces, shared by ``nbplane login --sso`` (redirect to a loopback port, RFC
8252), the Jupyter server extension (redirect to the Jupyter server itself) and the server's own
browser sign-in (nbplane.auth.authenticators.oidc): the login URL with its state, PKCE challenge
and nonce, the redirect's checks, the code trade for the provider's tokens (access, ID,
refresh), which the nbplane server then checks."""

from __future__ import annotations

import ipaddress
import queue
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from nbplane.auth.models import DescribeOAuth, ExchangeOAuthToken
from nbplane.errors import ConfigError, Unauthorized

TOKEN_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
VERIFIER_BYTES = 48
"""Random bytes of the PKCE code verifier: 64 characters, within RFC 7636's 43 to 128."""


@dataclass(frozen=True)
class PkceLogin:
    """One login in progress: the secrets only its initiator knows, and where it comes back."""

    provider: DescribeOAuth
    redirect_uri: str
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(VERIFIER_BYTES))
    state: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    client_secret: str | None = None
    """A confidential client's secret (the server's browser sign-in); the CLI has none."""

    def __post_init__(self) -> None:
        for url in (self.provider.authorize_url, self.provider.token_url):
            check_transport(url)

    @property
    def authorize_url(self) -> str:
        """Where the person's browser logs in."""
        url: str = prepare_grant_uri(  # type: ignore[no-untyped-call]  # authlib: unannotated
            self.provider.authorize_url,
            self.provider.client_id,
            "code",
            redirect_uri=self.redirect_uri,
            scope=self.provider.scopes,
            state=self.state,
            nonce=self.nonce,
            code_challenge=create_s256_code_challenge(self.verifier),  # type: ignore[no-untyped-call]
            code_challenge_method="S256",
        )
        return url

    @property
    def secret(self) -> str:
        """What only this login's initiator keeps until the browser comes back."""
        return f"{self.state}.{self.verifier}.{self.nonce}"

    @classmethod
    def resume(
        cls,
        provider: DescribeOAuth,
        redirect_uri: str,
        secret: str,
        client_secret: str | None = None,
    ) -> PkceLogin:
        """The login whose ``secret`` this is, to finish it."""
        state, verifier, nonce = ([*secret.split("."), "", ""])[:3]
        return cls(provider, redirect_uri, verifier, state, nonce, client_secret)

    def finish(self, redirect: dict[str, str], name: str | None = None) -> ExchangeOAuthToken:
        """The provider's tokens for the browser's redirect back to ``redirect_uri``, with this
        login's nonce, for the nbplane server to check (and name its token ``name``)."""
        code = check_redirect(redirect, self.state)
        answer = token_request(
            self.provider,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": self.verifier,
            },
            self.client_secret,
        )
        return ExchangeOAuthToken(
            access_token=answer["access_token"],
            id_token=_text(answer.get("id_token")),
            refresh_token=_text(answer.get("refresh_token")),
            nonce=self.nonce,
            name=name,
        )


def check_transport(url: str) -> None:
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


def check_redirect(redirect: dict[str, str], state: str) -> str:
    """The code from the provider's redirect, if it is the answer to this login."""
    if not secrets.compare_digest(redirect.get("state", ""), state):
        raise Unauthorized(
            "the browser came back with another login's state (a stale or forged redirect); "
            "log in again",
            field="state",
        )
    if "error" in redirect:
        raise Unauthorized(f"the OAuth provider refused the login: {_reason(redirect)}")
    code = redirect.get("code")
    if not code:
        raise Unauthorized("the browser came back without an authorization code", field="code")
    return code


def token_request(
    provider: DescribeOAuth, form: dict[str, str], client_secret: str | None = None
) -> dict[str, Any]:
    """The provider's token endpoint's answer to ``form`` (a code or a refresh token), which
    holds an access token; its refusal is an Unauthorized in its words."""
    form = {**form, "client_id": provider.client_id}
    if client_secret:
        form["client_secret"] = client_secret
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
    assert isinstance(body, dict)
    return body


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _reason(answer: dict[str, Any]) -> str:
    """OAuth2's error code and, when given, its description."""
    description = answer.get("error_description")
    return f"{answer['error']}: {description}" if description else str(answer["error"])


CALLBACK_PATH = "/callback"
PAGE = (
    b"<!doctype html><title>nbplane login</title><p>nbplane received the login. You can close "
    b"this tab; the terminal tells how it went.</p>"
)


class LoopbackRedirect:
    """A listener on a loopback port for the provider's redirect back (a native app's
    ``redirect_uri``), for as long as the ``with`` block lasts."""

    def __init__(self) -> None:
        self._server = _CallbackServer()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{CALLBACK_PATH}"

    def __enter__(self) -> LoopbackRedirect:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait(self, timeout: float) -> dict[str, str]:
        """The redirect's query parameters, once the browser comes back."""
        try:
            return self._server.received.get(timeout=timeout)
        except queue.Empty:
            raise Unauthorized(
                f"no login came back from the browser within {timeout:g} s; run `nbplane login "
                "--oauth` again (--timeout gives more time)",
                field="timeout",
            ) from None


class _CallbackServer(HTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Callback)
        self.received: queue.Queue[dict[str, str]] = queue.Queue()


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
