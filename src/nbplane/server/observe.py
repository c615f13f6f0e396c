"""What the server tells its operators: readiness checks, and per request a metric and an
access log line.

Readiness is a list of named checks kept on ``app.state.readiness`` (:class:`ReadinessCheck`):
the server adds the database, the schema and, when it runs one, its API worker; other parts
(the loops' lease holder) append theirs, in ``create_app`` or its lifespan. A check is a plain
callable answering ``(ok, detail)``; it runs in a thread, with :data:`CHECK_SECONDS` to answer,
and one that raises or does not answer in time fails. The details are shown without a token:
they say what failed, never an error's text (which may name hosts or users); that is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from starlette.routing import Match

from nbplane.platform.metrics import Metrics

log = logging.getLogger("nbplane.health")
access = logging.getLogger("nbplane.access")

CHECK_SECONDS = 2.0
"""A readiness check not answering within this long fails (a probe's own timeout is longer)."""
QUIET_PATHS = frozenset({"/health", "/health/live", "/health/ready", "/metrics"})
"""Probes and scrapes, every few seconds each: their access lines are at debug level."""
UNMATCHED = "(unmatched)"
"""The route label of a request no route took (a 404): never the raw path, which anyone could
vary without end."""


class ReadinessCheck(NamedTuple):
    name: str
    check: Callable[[], tuple[bool, str]]
    """Blocking is fine (it runs in a thread); raising means not ready."""


class DescribeCheck(BaseModel):
    ok: bool
    detail: str


class DescribeReadiness(BaseModel):
    status: Literal["ok", "unavailable"] = Field(
        description="ok when every check passes (HTTP 200), else unavailable (HTTP 503)."
    )
    checks: dict[str, DescribeCheck] = Field(description="Each check by name.")


async def readiness(checks: Sequence[ReadinessCheck]) -> DescribeReadiness:
    """Run every check at once, each within :data:`CHECK_SECONDS`."""
    results = await asyncio.gather(*(_run(check) for check in checks))
    described = {check.name: result for check, result in zip(checks, results, strict=True)}
    ok = all(result.ok for result in described.values())
    return DescribeReadiness(status="ok" if ok else "unavailable", checks=described)


async def _run(check: ReadinessCheck) -> DescribeCheck:
    try:
        ok, detail = await asyncio.wait_for(asyncio.to_thread(check.check), CHECK_SECONDS)
    except TimeoutError:
        log.warning("readiness: %s did not answer within %g s", check.name, CHECK_SECONDS)
        return DescribeCheck(ok=False, detail=f"no answer within {CHECK_SECONDS:g} s")
    except Exception as exc:
        log.warning("readiness: %s failed", check.name, exc_info=True)
        return DescribeCheck(ok=False, detail=f"failed ({type(exc).__name__}; see the log)")
    if not ok:
        log.warning("readiness: %s: %s", check.name, detail)
    return DescribeCheck(ok=ok, detail=detail)


def route_template(scope: dict[str, Any], asked: dict[str, Any]) -> str:
    """The route that took the request, as declared (``/api/v1/sessions/{session_id}``).
    FastAPI's routes say so in the ``scope`` they leave; the others (mounts, pages added with
    ``add_route``) and requests answered before routing are matched here against the app's
    routes, with the scope as ``asked`` before routing changed it."""
    taken = scope.get("route")
    for route in iter_route_contexts(scope["app"].routes):
        if route.original_route is taken if taken else route.matches(asked)[0] != Match.NONE:
            return str(route.path_format)  # a mount's: /web/{path}
    return UNMATCHED


class RouteTemplates:
    """:func:`route_template` remembered per FastAPI route that took a request: looking for it
    among every route of the app, as each request did, cost more than the rest of its
    observing."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[Any, str]] = {}

    def of(self, scope: dict[str, Any], asked: dict[str, Any]) -> str:
        taken = scope.get("route")
        if taken is None:
            return route_template(scope, asked)
        known = self._known.get(id(taken))
        if known is None or known[0] is not taken:  # kept with the route: its id is not reused
            known = self._known[id(taken)] = (taken, route_template(scope, asked))
        return known[1]


class Observe:
    """ASGI middleware: counts and times each HTTP request by method, route template and
    status, and writes its access line (``nbplane.access``: method, path, status, duration_ms,
    client, and the user when a token or cookie named one)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics
        self.templates = RouteTemplates()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, asked = time.perf_counter(), dict(scope)
        status = 500  # unless a response starts: an error escaping the app is answered 500

        async def watch(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self._observe(scope, asked, status, time.perf_counter() - started)

    def _observe(
        self, scope: dict[str, Any], asked: dict[str, Any], status: int, seconds: float
    ) -> None:
        method, path = scope["method"], scope["path"]
        labels = (method, self.templates.of(scope, asked), str(status))
        self.metrics.http_requests.labels(*labels).inc()
        self.metrics.http_duration.labels(*labels).observe(seconds)
        client = scope.get("client")
        address = f"{client[0]}:{client[1]}" if client else "-"
        user = (scope.get("state") or {}).get("user")
        duration_ms = round(seconds * 1000, 1)
        access.log(
            logging.DEBUG if path in QUIET_PATHS else logging.INFO,
            '%s %s "%s %s" %d %.1f ms',
            address,
            user or "-",
            method,
            path,
            status,
            duration_ms,
            extra={
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": duration_ms,
                "client": address,
                "user": user,
            },
        )
