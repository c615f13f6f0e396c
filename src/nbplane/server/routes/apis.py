"""nbplane's own API: ``/api/v1`` notebooks and executions.

A caller sees the notebook APIs open to their teams and only their own executions (admins:
all); anything else answers 404, as if it did not exist."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from nbplane._time import now
from nbplane.apis.models import (
    HOPS,
    DescribeExecution,
    DescribeNotebook,
    ExecutionPage,
    ListExecutionsQuery,
    SubmitExecution,
)
from nbplane.errors import NotFound
from nbplane.server.deps import Caller, Executions
from nbplane.server.errors import responses

router = APIRouter(prefix="/api/v1")

Wait = Annotated[
    float,
    Query(ge=0, le=300, description="Seconds to wait for the execution to end before answering."),
]
ExecutionsQuery = Annotated[ListExecutionsQuery, Query()]
"""``notebook``, ``status``, ``owner``, ``limit`` and ``offset`` as query parameters."""


@dataclass(frozen=True)
class RequestClock:
    """When the route began answering (its body read): the start of ``total``."""

    started: float = field(default_factory=time.perf_counter)
    began_at: datetime = field(default_factory=now)


async def request_clock() -> RequestClock:
    """Async, as every dependency that neither blocks nor waits: FastAPI runs a plain ``def``
    one in a worker thread, a hop per request."""
    return RequestClock()


Clock = Annotated[RequestClock, Depends(request_clock)]
"""First among a route's parameters, so that ``total`` includes authenticating the caller."""


def server_timing(response: Response, record: DescribeExecution, clock: RequestClock) -> None:
    """The standard ``Server-Timing`` header of a response carrying a final execution: its
    ``timings``, ``record`` when it ended during this request, and this request's ``total``
    (milliseconds, in the order of :data:`~nbplane.apis.models.HOPS`)."""
    if not record.status.final:
        return
    hops = dict(record.timings)
    if record.finished_at is not None and record.finished_at >= clock.began_at:
        hops["record"] = max((now() - record.finished_at).total_seconds() * 1000, 0.0)
    ordered = sorted(hops.items(), key=lambda hop: HOPS.index(hop[0]) if hop[0] in HOPS else 99)
    ordered.append(("total", (time.perf_counter() - clock.started) * 1000))
    response.headers["Server-Timing"] = ", ".join(
        f"{name};dur={round(milliseconds, 3)}" for name, milliseconds in ordered
    )


def describe_api(api: Any) -> DescribeNotebook:
    contract = api.contract
    return DescribeNotebook(
        name=api.name,
        status="broken" if api.broken else "ok",
        reason=api.broken,
        engine=contract.engine if contract else None,
        timeout=contract.timeout if contract else None,
        input=api.input_schema if not api.broken else None,
        output=api.output_schema if not api.broken else None,
    )


@router.get("/notebooks", summary="List the notebook APIs, broken ones with the reason")
def list_notebooks(service: Executions, caller: Caller) -> list[DescribeNotebook]:
    return [describe_api(api) for api in service.catalog.offered(caller)]


@router.get("/notebooks/{name}", summary="One notebook API and its contract")
def get_notebook(service: Executions, name: str, caller: Caller) -> DescribeNotebook:
    return describe_api(service.catalog.visible(name, caller))


@router.post(
    "/notebooks/{name}/executions",
    status_code=201,
    summary="Execute a notebook with parameters; optionally wait for the result",
    responses=responses(409),
)
async def submit(
    clock: Clock,
    service: Executions,
    name: str,
    caller: Caller,
    response: Response,
    body: Annotated[SubmitExecution | None, Body()] = None,
    wait: Wait = 0,
) -> DescribeExecution:
    record = await service.submit(name, (body or SubmitExecution()).parameters, caller, wait)
    server_timing(response, record, clock)
    return record


@router.get("/executions", summary="List your executions (admins: everyone's), newest first")
def list_executions(service: Executions, caller: Caller, query: ExecutionsQuery) -> ExecutionPage:
    return service.page(query, caller)


@router.get("/executions/{execution_id}", summary="One execution")
async def get_execution(
    clock: Clock,
    service: Executions,
    execution_id: str,
    caller: Caller,
    response: Response,
    wait: Wait = 0,
) -> DescribeExecution:
    if not wait:
        return await asyncio.to_thread(service.get, execution_id, caller)
    record = await service.wait(execution_id, wait, caller)
    server_timing(response, record, clock)
    return record


@router.post(
    "/executions/{execution_id}/cancel",
    summary="Cancel a queued or running execution",
    responses=responses(409),
)
async def cancel(service: Executions, execution_id: str, caller: Caller) -> DescribeExecution:
    return await service.cancel(execution_id, caller)


@router.get("/executions/{execution_id}/output", summary="The output the notebook saved")
def output(service: Executions, execution_id: str, caller: Caller) -> Response:
    record = service.get(execution_id, caller)
    if not record.has_output:
        raise NotFound(
            f"execution {execution_id} has no output ({record.status}"
            + (f": {record.reason})" if record.reason else ")"),
            field="execution_id",
        )
    return JSONResponse(record.output)


@router.get("/executions/{execution_id}/exception", summary="Why the execution failed")
def exception(service: Executions, execution_id: str, caller: Caller) -> dict[str, Any]:
    record = service.get(execution_id, caller)
    return {"status": record.status, "reason": record.reason, "error": record.error}


@router.get(
    "/executions/{execution_id}/notebook",
    summary="The executed notebook (.ipynb)",
    response_class=Response,
    responses={200: {"content": {"application/x-ipynb+json": {"schema": {"type": "object"}}}}},
)
def notebook(service: Executions, execution_id: str, caller: Caller) -> Response:
    content = service.artifact(execution_id, "ipynb", caller)
    return Response(content, media_type="application/x-ipynb+json")


@router.get(
    "/executions/{execution_id}/html",
    summary="The executed notebook as HTML",
    response_class=HTMLResponse,
)
async def html(service: Executions, execution_id: str, caller: Caller) -> HTMLResponse:
    return HTMLResponse(await asyncio.to_thread(service.html, execution_id, caller))


@router.get(
    "/executions/{execution_id}/logs",
    summary="What the notebook printed",
    response_class=PlainTextResponse,
)
def logs(service: Executions, execution_id: str, caller: Caller) -> PlainTextResponse:
    return PlainTextResponse(service.artifact(execution_id, "logs", caller))
