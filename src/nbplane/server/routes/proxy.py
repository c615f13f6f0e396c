"""Sessions behind nbplane's door: ``/sessions/{id}/...`` forwards HTTP (every method, bodies
streamed both ways) and WebSockets (kernels, terminals) to the session's Jupyter server, whose
base URL is that same path, so its pages, links and redirects need no rewriting.

Only the session's owner gets through (``SessionService.upstream``), signed in with nbplane's
cookie or a bearer token, as on the sessions API. The session server's own token is added here,
upstream, and never reaches the browser; nbplane's cookie and ``Authorization`` never reach the
session, nor do hop-by-hop headers. A signed-in browser's change must carry a header only a
script of the page can add (JupyterLab's ``X-XSRFToken``, or ``X-Nbplane-Csrf``), and its
WebSocket must come from nbplane's own origin. The session's answers may not set nbplane's
cookies, cookies outside its path, or ``Service-Worker-Allowed`` (a worker over all of
nbplane's pages): its pages share nbplane's origin. JupyterLab writes its server's token into
its page's configuration; pages (HTML) are read whole and the token taken out of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import httpx
from fastapi import APIRouter, Depends, Request, WebSocket
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from nbplane.auth.models import CSRF_HEADER, DescribeCaller
from nbplane.errors import Forbidden, NbplaneError, Unauthorized, Unreachable
from nbplane.server.auth import SAFE_METHODS
from nbplane.server.deps import Auth, ServerLogins, Sessions, credentials, on_app
from nbplane.server.errors import response_for
from nbplane.server.routes.sessions import anonymous_allowed
from nbplane.sessions.jupyter_api import session_client
from nbplane.sessions.service import ANONYMOUS_CALLER

router = APIRouter()
PREFIX = "/sessions/{session_id}/"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
DROPPED_REQUEST = HOP_BY_HOP | {"host", "authorization", "cookie", "origin", CSRF_HEADER.lower()}
"""Never forwarded to the session: nbplane's credentials travel in authorization and cookie
(the session's own cookies are put back by ``session_cookies``)."""
DROPPED_RESPONSE = HOP_BY_HOP | {"service-worker-allowed"}
WEBSOCKET_REQUEST = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions"}
)
"""Handshake headers the upstream connection makes its own."""
XSRF_HEADER = "x-xsrftoken"
"""JupyterLab's own CSRF header (from the ``_xsrf`` cookie of the session's page)."""
CONNECT_SECONDS = 10.0
PAGE_BYTES = 8 * 1_048_576
"""HTML answers up to this size are read whole, to take the server's token out of them
(JupyterLab's pages are tens of kilobytes); larger ones (a user's own file) stream as they
are."""
UNSENDABLE = frozenset({1004, 1005, 1006, 1015})
"""Close codes that only say what happened and may not be sent in a close frame."""
COOKIE_PATH = re.compile(r";\s*path=[^;]*", re.IGNORECASE)
COOKIE_DOMAIN = re.compile(r";\s*domain=[^;]*", re.IGNORECASE)


class SessionProxy:
    """The client that reaches sessions' servers, kept for the server's lifetime (its
    connections are reused)."""

    def __init__(self) -> None:
        self.http = session_client(
            httpx.Timeout(connect=CONNECT_SECONDS, read=None, write=None, pool=CONNECT_SECONDS)
        )

    async def close(self) -> None:
        await self.http.aclose()


Proxy = Annotated[SessionProxy, Depends(on_app("proxy"))]


def visitor(
    connection: HTTPConnection, auth: Auth, logins: ServerLogins, sessions: Sessions
) -> DescribeCaller:
    """Who opens the session: the bearer token's or the signed-in browser's user, or, with no
    credentials at all, the anonymous caller if anonymous sessions are on. A signed-in
    browser's change needs a header only the page's script adds; its WebSocket, nbplane's own
    origin."""
    try:
        found, by_cookie = credentials(connection, auth, logins)
    except Unauthorized:
        if not anonymous_allowed(connection, sessions):
            raise
        return ANONYMOUS_CALLER
    connection.state.user = found.user  # for the access log, as the other routes
    if not by_cookie:
        return found
    if connection.scope["type"] == "websocket":
        check_origin(connection)
    elif connection.scope.get("method") not in SAFE_METHODS:
        marked = (connection.headers.get(name, "").strip() for name in (XSRF_HEADER, CSRF_HEADER))
        if not any(marked):
            raise Forbidden(
                f"a signed-in browser's change to a session needs JupyterLab's X-XSRFToken (or "
                f"the {CSRF_HEADER}) header; a request from another site cannot use the sign-in",
                field=XSRF_HEADER,
            )
    return found


def check_origin(connection: HTTPConnection) -> None:
    """A signed-in browser's WebSocket comes from a page of this host."""
    origin = connection.headers.get("origin", "")
    if urlsplit(origin).netloc != connection.headers.get("host", ""):
        raise Forbidden(
            f"a signed-in browser's WebSocket must come from nbplane's own pages, not "
            f"{origin or 'an unnamed origin'}",
            field="origin",
        )


Visitor = Annotated[DescribeCaller, Depends(visitor)]


def upstream_url(connection: HTTPConnection, session_id: str, base: str) -> str:
    """The session server's URL of the request: its base URL and the rest of the path as it
    came (still percent-encoded), with the query."""
    prefix = PREFIX.format(session_id=session_id)
    raw = connection.scope.get("raw_path") or quote(connection.scope["path"]).encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    rest = path[len(prefix) :] if path.startswith(prefix) else quote(path.removeprefix(prefix))
    query = connection.scope.get("query_string", b"").decode("latin-1")
    return base + rest + (f"?{query}" if query else "")


def forwarded_headers(
    connection: HTTPConnection, token: str, dropped: frozenset[str]
) -> list[tuple[str, str]]:
    """The request's headers for the session: without nbplane's credentials and hop-by-hop
    headers (and those the Connection header names), with the session's own cookies and its
    server's token."""
    named = {part.strip().lower() for part in connection.headers.get("connection", "").split(",")}
    headers = [
        (name, value)
        for name, value in connection.headers.items()
        if name not in dropped and name not in named
    ]
    cookies = session_cookies(connection)
    if cookies:
        headers.append(("cookie", cookies))
    headers.append(("authorization", f"token {token}"))
    return headers


def session_cookies(connection: HTTPConnection) -> str:
    """The browser's cookies but nbplane's own (``nbplane_*``)."""
    return "; ".join(
        f"{name}={value}"
        for name, value in connection.cookies.items()
        if not name.startswith("nbplane")
    )


def returned_headers(
    response: httpx.Response, session_id: str, upstream: str
) -> list[tuple[bytes, bytes]]:
    """The session's answer's headers for the browser: no hop-by-hop ones, redirects to the
    server's own address made paths of nbplane's, cookies kept to the session's path."""
    prefix = PREFIX.format(session_id=session_id)
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(upstream))
    named = {part.strip().lower() for part in response.headers.get("connection", "").split(",")}
    headers: list[tuple[bytes, bytes]] = []
    for name, value in response.headers.multi_items():
        name = name.lower()
        if name in DROPPED_RESPONSE or name in named:
            continue
        if name == "location" and value.startswith(origin + "/"):
            value = value[len(origin) :]
        if name == "set-cookie":
            cookie = session_cookie(value, prefix)
            if cookie is None:
                continue
            value = cookie
        headers.append((name.encode("latin-1"), value.encode("latin-1")))
    return headers


def session_cookie(value: str, prefix: str) -> str | None:
    """A cookie the session sets, kept to its own path and host; None for nbplane's names."""
    name = value.split("=", 1)[0].strip()
    if name.lower().startswith("nbplane"):
        return None
    path = COOKIE_PATH.search(value)
    if path is not None and path.group(0).split("=", 1)[1].strip().startswith(prefix):
        return COOKIE_DOMAIN.sub("", value)
    return f"{COOKIE_PATH.sub('', COOKIE_DOMAIN.sub('', value))}; Path={prefix}"


@router.api_route(PREFIX + "{path:path}", methods=METHODS, include_in_schema=False)
async def forward(
    request: Request,
    session_id: str,
    path: str,
    sessions: Sessions,
    proxy: Proxy,
    who: Visitor,
) -> Response:
    """The session server's answer to the request, streamed."""
    base, token = await sessions.upstream(who, session_id)
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    headers = forwarded_headers(request, token, DROPPED_REQUEST)
    if "accept-encoding" not in request.headers or "text/html" in request.headers.get("accept", ""):
        headers = [h for h in headers if h[0] != "accept-encoding"]  # a page is read whole
        headers.append(("accept-encoding", "identity"))
    outgoing = proxy.http.build_request(
        request.method,
        upstream_url(request, session_id, base),
        headers=headers,
        content=request.stream() if has_body else None,
    )
    try:
        response = await proxy.http.send(outgoing, stream=True)
    except httpx.HTTPError as exc:
        raise unreachable(session_id, exc) from None
    if is_page(response):
        try:
            body = (await response.aread()).replace(token.encode(), b"")
        except httpx.HTTPError as exc:
            raise unreachable(session_id, exc) from None
        finally:
            await response.aclose()
        page = Response(body, status_code=response.status_code)
        page.raw_headers = [
            *[h for h in returned_headers(response, session_id, base) if h[0] != b"content-length"],
            (b"content-length", str(len(body)).encode()),
        ]
        return page
    answer = StreamingResponse(
        relay(response),
        status_code=response.status_code,
        background=BackgroundTask(response.aclose),
    )
    answer.raw_headers = returned_headers(response, session_id, base)
    return answer


def is_page(response: httpx.Response) -> bool:
    """An HTML answer, not compressed, small enough to read whole."""
    size = response.headers.get("content-length", "0")
    return (
        response.headers.get("content-type", "").startswith("text/html")
        and response.headers.get("content-encoding", "identity") == "identity"
        and (not size.isdigit() or int(size) <= PAGE_BYTES)
    )


async def relay(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as it comes (compressed as it was); a server that goes away mid-answer ends
    it short."""
    with contextlib.suppress(httpx.HTTPError):
        async for chunk in response.aiter_raw():
            yield chunk


def unreachable(session_id: str, exc: Exception) -> Unreachable:
    return Unreachable(
        f"session {session_id}'s Jupyter server did not answer ({type(exc).__name__}); it may "
        f"be restarting: see `nbplane session logs {session_id}`",
        field="session_id",
    )


@router.websocket(PREFIX + "{path:path}")
async def forward_websocket(
    websocket: WebSocket,
    session_id: str,
    path: str,
    auth: Auth,
    logins: ServerLogins,
    sessions: Sessions,
) -> None:
    """Join the browser's WebSocket to one opened to the session's server, with the
    subprotocol the server picks; each side's close closes the other."""
    try:
        who = visitor(websocket, auth, logins, sessions)
        base, token = await sessions.upstream(who, session_id)
        url = upstream_url(websocket, session_id, base).replace("http", "ws", 1)
        upstream = await open_upstream(websocket, session_id, url, token)
    except NbplaneError as exc:
        await deny(websocket, response_for(exc), exc.message)
        return
    except InvalidStatus as exc:  # the server's own refusal (an unknown kernel): passed on
        refusal = exc.response
        await deny(
            websocket,
            Response(bytes(refusal.body or b""), status_code=refusal.status_code),
            f"the session's server answered {refusal.status_code}",
        )
        return
    async with upstream:
        await websocket.accept(subprotocol=upstream.subprotocol)
        await join(websocket, upstream)


async def open_upstream(
    websocket: WebSocket, session_id: str, url: str, token: str
) -> ClientConnection:
    headers = forwarded_headers(
        websocket, token, DROPPED_REQUEST | WEBSOCKET_REQUEST | {"sec-websocket-protocol"}
    )
    try:
        return await connect(
            url,
            additional_headers=headers,
            subprotocols=[Subprotocol(name) for name in websocket.scope.get("subprotocols", [])]
            or None,
            open_timeout=CONNECT_SECONDS,
            max_size=None,
            ping_interval=None,
            compression=None,
            user_agent_header=None,
        )
    except InvalidStatus:
        raise
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise unreachable(session_id, exc) from None


async def deny(websocket: WebSocket, response: Response, reason: str) -> None:
    """Refuse the handshake with ``response`` (where the server can send one; else a close
    with the reason)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(1008, reason[:120])


def sendable(code: int) -> int:
    """The close code to pass on: the other side's, or 1000 when it may not be sent."""
    return code if 1000 <= code < 5000 and code not in UNSENDABLE else 1000


async def join(websocket: WebSocket, upstream: ClientConnection) -> None:
    async def from_browser() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(sendable(message.get("code", 1000)))
                return
            data: Any = message.get("text")
            await upstream.send(message["bytes"] if data is None else data)

    async def from_session() -> None:
        try:
            async for data in upstream:
                if isinstance(data, str):
                    await websocket.send_text(data)
                else:
                    await websocket.send_bytes(data)
        except ConnectionClosed:
            pass
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(sendable(upstream.close_code or 1000))

    tasks = [asyncio.create_task(from_browser()), asyncio.create_task(from_session())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, WebSocketDisconnect):
                await task
