"""Real receivers of notifications on loopback, for tests: an HTTP server that records webhook
POSTs and an SMTP server (aiosmtpd) that records emails."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

HOOK_SECRET = "T000/B000/hook-secret-4f9a2c"
"""The path of the receiver's webhook: the credential of a Slack-like one."""


@dataclass
class Receiver:
    """An HTTP server on loopback that records each POST and answers the planned statuses
    (then 200)."""

    port: int = 0
    posts: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/{HOOK_SECRET}"


@contextmanager
def receiving_webhooks() -> Iterator[Receiver]:
    found = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            found.posts.append((dict(self.headers), json.loads(body)))
            self.send_response(found.statuses.pop(0) if found.statuses else 200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Mailbox:
    """The emails an SMTP server on loopback received."""

    port: int
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Login:
    """Accepts the one SMTP login of tests."""

    user: str
    password: str

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            self.user.encode(),
            self.password.encode(),
        )
        return AuthResult(success=ok)


@contextmanager
def receiving_mail(
    tls: Literal["none", "starttls", "ssl"] = "none",
    context: ssl.SSLContext | None = None,
    login: Login | None = None,
) -> Iterator[Mailbox]:
    """An SMTP server on loopback: plain, offering STARTTLS (and requiring it), or speaking TLS
    from the first byte, with ``context``'s certificate; ``login`` makes it ask for one."""
    from aiosmtpd.controller import Controller

    box = Mailbox(free_port())
    options: dict[str, Any] = {}
    if tls == "starttls":
        options.update(tls_context=context, require_starttls=True)
    elif tls == "ssl":
        options.update(ssl_context=context, auth_require_tls=False)
    if login is not None:
        options.update(authenticator=login, auth_required=True)
    controller = Controller(box, hostname="127.0.0.1", port=box.port, **options)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()
