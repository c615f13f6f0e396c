"""nbplane's own API: ``/api/v1`` notebooks and executions.

A caller sees the notebook APIs open to their teams and only their own executions (admins:
all); anything else answers 404, as if it did not exist."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from nbplane.apis.models import (
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
    service: Executions,
    name: str,
    caller: Caller,
    body: Annotated[SubmitExecution | None, Body()] = None,
    wait: Wait = 0,
) -> DescribeExecution:
    record = await service.submit(name, (body or SubmitExecution()).parameters, caller)
    if wait:
        record = await service.wait(record.id, wait, caller)
    return record


@router.get("/executions", summary="List your executions (admins: everyone's), newest first")
def list_executions(service: Executions, caller: Caller, query: ExecutionsQuery) -> ExecutionPage:
    return service.page(query, caller)


@router.get("/executions/{execution_id}", summary="One execution")
async def get_execution(
    service: Executions, execution_id: str, caller: Caller, wait: Wait = 0
) -> DescribeExecution:
    if wait:
        return await service.wait(execution_id, wait, caller)
    return await asyncio.to_thread(service.get, execution_id, caller)


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
