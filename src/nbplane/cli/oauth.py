"""The browser half of ``nbplane login --oauth``: OAuth2's authorization code flow with PKCE
(RFC 7636) as a native app does it, the redirect caught on a loopback port (RFC 8252)."""

from __future__ import annotations

import queue
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rich.console import Console
from rich.markup import escape

from nbplane.auth.oauth import DescribeOAuth
from nbplane.auth.pkce import PkceLogin
from nbplane.errors import Unauthorized

CALLBACK_PATH = "/callback"
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
    with _CallbackServer() as listener:
        threading.Thread(target=listener.serve_forever, daemon=True).start()
        try:
            login = PkceLogin(provider, listener.redirect_uri)
            Console().print(
                "Log in in your browser; if it does not open, visit:\n"
                + escape(login.authorize_url),
                highlight=False,
                soft_wrap=True,
            )
            webbrowser.open(login.authorize_url)
            redirect = _wait(listener, timeout)
        finally:
            listener.shutdown()
    return login.finish(redirect)


def _wait(listener: _CallbackServer, timeout: float) -> dict[str, str]:
    try:
        return listener.received.get(timeout=timeout)
    except queue.Empty:
        raise Unauthorized(
            f"no login came back from the browser within {timeout:g} s; run `nbplane login "
            "--oauth` again (--timeout gives more time)",
            field="timeout",
        ) from None
