"""Bad input refused at the door, for every route alike, before any route reads it: a body over
the size limit (declared or streamed, chunked too) is a 413, and text that no database can keep
is a 422 naming where it is: a JSON string (or key) that cannot be encoded as UTF-8 (a lone
surrogate such as ``"\\ud800"``, which JSON's escapes can spell) or that holds NUL
(``"\\u0000"``, which PostgreSQL's text refuses), and NUL in the path or the query. Such text
would otherwise reach the store and fail there as a 500, or be kept and break every later read
of it."""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn
from urllib.parse import parse_qsl

from nbplane.errors import InvalidInput, NbplaneError, PayloadTooLarge
from nbplane.server.errors import dotted, response_for

UNSTORABLE_ESCAPE = re.compile(rb"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0000)")
"""A JSON escape of a UTF-16 surrogate or of NUL; only a body with one is parsed here (paired
surrogates, as an emoji's, are fine and pass)."""
PROBLEM = "not text that can be stored (a lone surrogate such as \\ud800, or NUL)"
EXECUTION_API = "/api/v1/execution/"
SESSIONS = "/sessions/"
"""Forwarded to sessions' servers (routes/proxy.py): streamed through, counted like uploads,
never parsed here."""
JSON_TYPES = re.compile(r"^application/(json|[^;\s]+\+json)\b", re.IGNORECASE)


class Door:
    """ASGI middleware: reads the request body (at most ``limit`` bytes), checks it, then hands
    it on. Job archive uploads (paths ending in ``/versions``) may be up to ``upload_limit``
    and are not JSON: they stream through, counted, to the route, which reads them only after
    the caller's token is checked; so do bodies forwarded to sessions (``/sessions/...``). A
    job execution's records (``/api/v1/execution/...``: step outputs, executed notebooks) may
    be as large, and are checked as JSON."""

    def __init__(self, app: Any, limit: int, upload_limit: int) -> None:
        self.app, self.limit, self.upload_limit = app, limit, upload_limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "").rstrip("/")
        upload = path.endswith("/versions") or path.startswith(SESSIONS)
        records = path.startswith(EXECUTION_API)  # a job's step outputs and executed notebooks
        limit = self.upload_limit if upload or records else self.limit
        headers = dict(scope.get("headers", []))
        try:
            check_address(scope)
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise too_large(limit)
            if upload:
                await self.app(scope, counted(receive, limit), send)
                return
            body, ended = await read_body(receive, limit)
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            if not content_type or JSON_TYPES.match(content_type):
                check_strings(body)
        except NbplaneError as exc:
            await response_for(exc)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            if ended is not None:
                return ended
            return await receive()

        await self.app(scope, replay, send)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is over {limit} bytes", field="body")


def counted(receive: Any, limit: int) -> Any:
    """``receive`` raising PayloadTooLarge once more than ``limit`` bytes came: a route reading
    the body gets it as any error of ours (the one mapping makes it a 413)."""
    size = 0

    async def receive_counted() -> Any:
        nonlocal size
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > limit:
                raise too_large(limit)
        return message

    return receive_counted


async def read_body(receive: Any, limit: int) -> tuple[bytes, dict[str, Any] | None]:
    """The whole body, or PayloadTooLarge as soon as it is over ``limit``; and the disconnect
    message if the client left meanwhile."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), None


def check_address(scope: Any) -> None:
    """InvalidInput for NUL in the path or in a query parameter."""
    if "\x00" in scope.get("path", ""):
        refuse(["path"])
    query = scope.get("query_string", b"").decode("latin-1")
    if "%00" in query or "\x00" in query:
        for name, value in parse_qsl(query, keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                refuse(["query", name.replace("\x00", "\\u0000")])


def check_strings(body: bytes) -> None:
    """InvalidInput naming a string (or key) of the JSON body that cannot be stored;
    a body that is not JSON (or nested too deep to read) is left to the route."""
    if not UNSTORABLE_ESCAPE.search(body):
        return
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return
    location = unstorable(value)
    if location is not None:
        refuse(location)


def refuse(location: list[str | int]) -> NoReturn:
    field = dotted(location)
    message = f"{field}: {PROBLEM}; send UTF-8 text"
    raise InvalidInput(
        message,
        field=field,
        errors=[{"pointer": "/" + "/".join(map(str, location)), "message": message}],
    )


def unstorable(body: Any) -> list[str | int] | None:
    """Where in the JSON ``body`` a string (or key) that cannot be stored is, or None; walked
    with a stack of its own, as deep as the JSON parser went."""
    pending: list[tuple[Any, list[str | int]]] = [(body, ["body"])]
    while pending:
        value, location = pending.pop()
        if isinstance(value, str) and not storable(value):
            return location
        items: Any = ()
        if isinstance(value, list):
            items = enumerate(value)
        elif isinstance(value, dict):
            items = value.items()
        for key, item in items:
            if isinstance(key, str) and not storable(key):
                shown = key.encode("utf-8", "backslashreplace").decode()
                return [*location, shown.replace("\x00", "\\u0000")]
            pending.append((item, [*location, key]))
    return None


def storable(text: str) -> bool:
    """UTF-8 can encode it and it holds no NUL."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
