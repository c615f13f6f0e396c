"""``/api/v1/execution``: the API a deployed job's own process uses, with its execution's
credential (``NBPLANE_EXECUTION_TOKEN``) and nothing else. Thin: the rules live in
ExecutionContextService; no user token is accepted here, and this credential nowhere else."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Security
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from nbplane.deployments.context import ExecutionContextService, ExecutionIdentity
from nbplane.deployments.models import (
    AppendLog,
    DescribeExecutionContext,
    FinishJobExecution,
    FinishRun,
)
from nbplane.errors import Unauthorized
from nbplane.jobs.models import CreateRun, DescribeGrantedConnection, DescribeRun, DescribeRunStep

router = APIRouter(prefix="/api/v1/execution")


def context(request: Request) -> ExecutionContextService:
    service: ExecutionContextService = request.app.state.execution_context
    return service


Credential = Annotated[
    HTTPAuthorizationCredentials | None,
    Security(
        HTTPBearer(
            auto_error=False,
            scheme_name="ExecutionCredential",
            description="A running job execution's own credential (NBPLANE_EXECUTION_TOKEN).",
        )
    ),
]


def identity(request: Request, credential: Credential = None) -> ExecutionIdentity:
    if credential is None or not credential.credentials.strip():
        raise Unauthorized(
            "this endpoint needs a job execution's credential (Authorization: Bearer nbx_...)",
            field="authorization",
        )
    return context(request).identify(credential.credentials.strip())


Execution = Annotated[ExecutionIdentity, Depends(identity)]


@router.get("", summary="The execution this credential belongs to")
def describe(request: Request, execution: Execution) -> DescribeExecutionContext:
    return context(request).describe(execution)


@router.get(
    "/archive",
    summary="The deployed version's archive",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
def archive(request: Request, execution: Execution) -> Response:
    return Response(context(request).archive(execution), media_type="application/zip")


@router.get("/properties", summary="The job's properties")
def properties(request: Request, execution: Execution) -> dict[str, Any]:
    return context(request).properties(execution)


@router.put("/properties", status_code=204, summary="Replace the job's properties")
def set_properties(request: Request, execution: Execution, body: dict[str, Any]) -> None:
    context(request).set_properties(execution, body)


@router.get("/secrets", summary="The job's secrets, in clear, for this execution only")
def secrets(request: Request, execution: Execution) -> dict[str, Any]:
    return context(request).secrets(execution)


@router.put("/secrets", status_code=204, summary="Replace the job's secrets")
def set_secrets(request: Request, execution: Execution, body: dict[str, Any]) -> None:
    context(request).set_secrets(execution, body)


@router.get("/connections", summary="The connections granted to the job's team, with values")
def connections(request: Request, execution: Execution) -> list[DescribeGrantedConnection]:
    return context(request).connections(execution)


@router.post("/log", status_code=204, summary="Add output to the execution's log")
def append_log(request: Request, execution: Execution, body: AppendLog) -> None:
    context(request).append_log(execution, body)


@router.post("/runs", status_code=201, summary="Start the execution's run record")
def create_run(request: Request, execution: Execution, body: CreateRun) -> DescribeRun:
    return context(request).create_run(execution, body)


@router.post("/runs/{run_id}/steps", status_code=204, summary="Record a step of the run")
def add_step(request: Request, execution: Execution, run_id: int, body: DescribeRunStep) -> None:
    context(request).add_step(execution, run_id, body)


@router.post("/runs/{run_id}/finish", summary="End the run record")
def finish_run(request: Request, execution: Execution, run_id: int, body: FinishRun) -> DescribeRun:
    return context(request).finish_run(execution, run_id, body)


@router.post("/finish", status_code=204, summary="Record how the execution ended")
def finish(request: Request, execution: Execution, body: FinishJobExecution) -> None:
    context(request).finish(execution, body)
