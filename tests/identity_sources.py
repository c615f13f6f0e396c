"""Identity sources the authenticator tests run on loopback: a gateway in front of nbplane that
adds the user and groups headers (as oauth2-proxy does) from an address of its own, and an
application that says who its session cookies and tokens belong to (as OpenHexa does)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

GATEWAY_ADDRESS = "127.0.0.2"
"""The gateway reaches nbplane from here; the tests themselves call from 127.0.0.1."""
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


@dataclass
class Person:
    user: str
    groups: list[str] | None = None
    connections: list[dict[str, Any]] = field(default_factory=list)


class _Server(ThreadingHTTPServer):
    daemon_threads = True


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], state: Any) -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), handler)
    server.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Gateway:
    """A reverse proxy that has "logged in" ``person`` (None: nobody) and says so to nbplane
    in the headers, dropping any the client sent, as a gateway must."""

    upstream: str
    person: Person | None = None
    url: str = ""


class _GatewayHandler(BaseHTTPRequestHandler):
    server: Any

    def _forward(self) -> None:
        gateway: Gateway = self.server.state
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in HOP_HEADERS and not name.lower().startswith("x-forwarded-")
        }
        if gateway.person is not None:
            headers["X-Forwarded-User"] = gateway.person.user
            if gateway.person.groups is not None:
                headers["X-Forwarded-Groups"] = ",".join(gateway.person.groups)
        transport = httpx.HTTPTransport(local_address=GATEWAY_ADDRESS)
        with httpx.Client(transport=transport, timeout=60) as client:
            answer = client.request(
                self.command, gateway.upstream + self.path, headers=headers, content=body
            )
        self.send_response(answer.status_code)
        for name, value in answer.headers.multi_items():
            if name.lower() not in HOP_HEADERS and name.lower() != "content-encoding":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@contextmanager
def running_gateway(upstream: str) -> Iterator[Gateway]:
    gateway = Gateway(upstream)
    with serving(_GatewayHandler, gateway) as url:
        gateway.url = url
        yield gateway


@dataclass
class App:
    """An application that knows its sign-ins (cookie value or token -> person) and says who
    they are at ``/whoami``; ``failing`` makes it answer that status, or ``junk`` a non-JSON."""

    sign_ins: dict[str, Person] = field(default_factory=dict)
    failing: int | None = None
    asked: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    @property
    def whoami(self) -> str:
        return f"{self.url}/whoami"


class _AppHandler(BaseHTTPRequestHandler):
    server: Any

    def do_GET(self) -> None:
        app: App = self.server.state
        app.asked.append(dict(self.headers.items()))
        cookie = (self.headers.get("cookie") or "").partition("sessionid=")[2].split(";")[0]
        scheme, _, token = (self.headers.get("authorization") or "").partition(" ")
        person = app.sign_ins.get(cookie or (token if scheme.lower() == "bearer" else ""))
        if app.failing is not None:
            self._answer(app.failing, b"the application is down")
        elif person is None:
            self._answer(401, b'{"detail": "not signed in"}')
        else:
            answer: dict[str, Any] = {"user": person.user, "connections": person.connections}
            if person.groups is not None:
                answer["groups"] = person.groups
            self._answer(200, json.dumps(answer).encode())

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@contextmanager
def running_app() -> Iterator[App]:
    app = App()
    with serving(_AppHandler, app) as url:
        app.url = url
        yield app
