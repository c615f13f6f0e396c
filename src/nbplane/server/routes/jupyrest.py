"""jupyrest's API, unchanged, so its clients keep working against nbplane; the same owners and
teams as ``/api/v1`` decide who sees what."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from nbplane.apis.models import DescribeExecution
from nbplane.server.deps import Caller, Executions
from nbplane.server.errors import responses
from nbplane.server.routes.apis import Clock, Wait, server_timing

router = APIRouter(prefix="/api", tags=["jupyrest"])


class CreateNotebookExecution(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notebook: str = Field(description="The notebook's name (its file name without .ipynb).")
    parameters: dict[str, Any] = Field(default_factory=dict)


def jupyrest_view(record: DescribeExecution, with_output: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": record.id,
        "status": record.status.upper(),
        "notebook": record.notebook,
        "parameters": record.parameters,
    }
    if with_output:
        view["exception"] = record.reason if record.error else None
        view["output"] = record.output
    return view


@router.post(
    "/NotebookExecutions", summary="Execute a notebook (jupyrest)", responses=responses(404, 409)
)
async def create(
    clock: Clock,
    service: Executions,
    body: CreateNotebookExecution,
    caller: Caller,
    response: Response,
    wait: Wait = 0,
) -> dict[str, Any]:
    record = await service.submit(body.notebook, body.parameters, caller, wait)
    server_timing(response, record, clock)
    return jupyrest_view(record, with_output=False)


@router.get(
    "/NotebookExecutions",
    summary="An execution, its output or its HTML (jupyrest)",
    responses={
        **responses(404),
        200: {"content": {"application/json": {}, "text/html": {"schema": {"type": "string"}}}},
    },
)
async def read(
    service: Executions,
    caller: Caller,
    executionId: str = Query(description="The id POST returned."),
    output: bool = False,
    view_html: bool = False,
) -> Any:
    if view_html:
        return HTMLResponse(await asyncio.to_thread(service.html, executionId, caller))
    record = await asyncio.to_thread(service.get, executionId, caller)
    return jupyrest_view(record, with_output=output)
