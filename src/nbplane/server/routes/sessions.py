"""The sessions API: ``/api/v1/sessions``. Thin: every rule lives in SessionService.

Without a token a request is anonymous when NBPLANE_SESSION_ANONYMOUS is on: it may create a
session (within the anonymous limits) and act on an anonymous session whose id it knows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.requests import HTTPConnection

from nbplane.auth.models import DescribeCaller
from nbplane.errors import NotFound, Unauthorized
from nbplane.server.auth import COOKIE, Bearer
from nbplane.server.deps import Auth, ServerLogins, Sessions, caller
from nbplane.server.errors import responses
from nbplane.sessions.models import CreateSession, DescribeResourceClass, DescribeSession
from nbplane.sessions.service import ANONYMOUS_CALLER, SessionService

router = APIRouter(prefix="/api/v1/sessions")
EVENTS_POLL_SECONDS = 0.2


async def session_caller(
    request: Request, auth: Auth, logins: ServerLogins, sessions: Sessions, _bearer: Bearer = None
) -> DescribeCaller:
    """The token's caller; with no credentials at all, the anonymous caller if allowed."""
    try:
        return await caller(request, auth, logins)
    except Unauthorized:
        if not anonymous_allowed(request, sessions):
            raise
        return ANONYMOUS_CALLER


def anonymous_allowed(connection: HTTPConnection, sessions: SessionService) -> bool:
    """No credentials came (no token, no sign-in) and anonymous sessions are on."""
    given = connection.headers.get("authorization") or connection.cookies.get(COOKIE)
    return not given and sessions.settings.session_anonymous


SessionCaller = Annotated[DescribeCaller, Depends(session_caller)]


async def visible_session(
    sessions: Sessions, session_id: str, who: SessionCaller
) -> DescribeSession:
    """The session, or 404 before any response starts (a stream cannot change its status)."""
    return await sessions.get(who, session_id)


@router.get("/resource-classes", summary="The resource classes the caller may choose")
def resource_classes(sessions: Sessions, who: SessionCaller) -> list[DescribeResourceClass]:
    return sessions.resource_classes(who)


@router.post(
    "",
    status_code=201,
    summary="Start a session: a Jupyter server of the caller's",
    responses=responses(409, 429),
)
async def create(sessions: Sessions, body: CreateSession, who: SessionCaller) -> DescribeSession:
    return await sessions.create(who, body)


@router.get(
    "", summary="The caller's sessions; `all=true`: everyone's (admins)", responses=responses(404)
)
async def list_sessions(
    sessions: Sessions,
    who: SessionCaller,
    everyone: Annotated[bool, Query(alias="all", description="Everyone's (admins).")] = False,
) -> list[DescribeSession]:
    return await sessions.list_sessions(who, everyone)


@router.get("/{session_id}", summary="A session: status, steps, URL, culling times")
async def get(sessions: Sessions, session_id: str, who: SessionCaller) -> DescribeSession:
    return await sessions.get(who, session_id)


@router.get(
    "/{session_id}/events",
    response_class=EventSourceResponse,
    summary="Server-sent `session` events, each the session as it changes, until it is "
    "running, failed or hibernated (or deleted)",
)
async def events(
    request: Request,
    sessions: Sessions,
    session_id: str,
    who: SessionCaller,
    described: Annotated[DescribeSession, Depends(visible_session)],
) -> AsyncIterator[ServerSentEvent]:
    sent = None
    while True:
        text = described.model_dump_json()
        if text != sent:
            yield ServerSentEvent(raw_data=text, event="session")
            sent = text
        if described.status.settled or await request.is_disconnected():
            return
        await asyncio.sleep(EVENTS_POLL_SECONDS)
        try:
            described = await sessions.get(who, session_id)
        except NotFound:
            return


@router.get(
    "/{session_id}/logs",
    response_class=PlainTextResponse,
    summary="The last lines of the session's server output",
)
async def logs(
    sessions: Sessions,
    session_id: str,
    who: SessionCaller,
    tail: Annotated[int, Query(ge=1, le=10000, description="How many lines.")] = 200,
) -> PlainTextResponse:
    return PlainTextResponse(await sessions.logs(who, session_id, tail))


@router.post(
    "/{session_id}/hibernate", summary="Stop the server, keep its files", responses=responses(409)
)
async def hibernate(sessions: Sessions, session_id: str, who: SessionCaller) -> DescribeSession:
    return await sessions.hibernate(who, session_id)


@router.post(
    "/{session_id}/resume",
    summary="Start a hibernated or failed session again",
    responses=responses(409, 429),
)
async def resume(sessions: Sessions, session_id: str, who: SessionCaller) -> DescribeSession:
    return await sessions.resume(who, session_id)


@router.delete(
    "/{session_id}",
    status_code=204,
    summary="Stop and forget a session",
    responses=responses(409),
)
async def delete(
    sessions: Sessions,
    session_id: str,
    who: SessionCaller,
    purge: Annotated[bool, Query(description="Delete its workspace (files) too.")] = False,
) -> Response:
    await sessions.delete(who, session_id, purge)
    return Response(status_code=204)
