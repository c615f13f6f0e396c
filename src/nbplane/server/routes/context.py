"""``/api/v1/execution``: the API a deployed job's own process uses, with its execution's
credential (``NBPLANE_EXECUTION_TOKEN``) and nothing else. Thin: the rules live in
ExecutionContextService; no user token is accepted here, and this credential nowhere else."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Security
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from nbplane.deployments.context import ExecutionIdentity
from nbplane.deployments.models import (
    AppendLog,
    DescribeExecutionContext,
    FinishJobExecution,
    FinishRun,
)
from nbplane.errors import Unauthorized
from nbplane.jobs.models import CreateRun, DescribeGrantedConnection, DescribeRun, DescribeRunStep
from nbplane.server.deps import ExecutionContext

router = APIRouter(prefix="/api/v1/execution")


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


def identity(context: ExecutionContext, credential: Credential = None) -> ExecutionIdentity:
    if credential is None or not credential.credentials.strip():
        raise Unauthorized(
            "this endpoint needs a job execution's credential (Authorization: Bearer nbx_...)",
            field="authorization",
        )
    return context.identify(credential.credentials.strip())


Execution = Annotated[ExecutionIdentity, Depends(identity)]


@router.get("", summary="The execution this credential belongs to")
def describe(context: ExecutionContext, execution: Execution) -> DescribeExecutionContext:
    return context.describe(execution)


@router.get(
    "/archive",
    summary="The deployed version's archive",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}},
)
def archive(context: ExecutionContext, execution: Execution) -> Response:
    return Response(context.archive(execution), media_type="application/zip")


@router.get("/properties", summary="The job's properties")
def properties(context: ExecutionContext, execution: Execution) -> dict[str, Any]:
    return context.properties(execution)


@router.put("/properties", status_code=204, summary="Replace the job's properties")
def set_properties(context: ExecutionContext, execution: Execution, body: dict[str, Any]) -> None:
    context.set_properties(execution, body)


@router.get("/secrets", summary="The job's secrets, in clear, for this execution only")
def secrets(context: ExecutionContext, execution: Execution) -> dict[str, Any]:
    return context.secrets(execution)


@router.put("/secrets", status_code=204, summary="Replace the job's secrets")
def set_secrets(context: ExecutionContext, execution: Execution, body: dict[str, Any]) -> None:
    context.set_secrets(execution, body)


@router.get("/connections", summary="The connections granted to the job's team, with values")
def connections(context: ExecutionContext, execution: Execution) -> list[DescribeGrantedConnection]:
    return context.connections(execution)


@router.post("/log", status_code=204, summary="Add output to the execution's log")
def append_log(context: ExecutionContext, execution: Execution, body: AppendLog) -> None:
    context.append_log(execution, body)


@router.post("/runs", status_code=201, summary="Start the execution's run record")
def create_run(context: ExecutionContext, execution: Execution, body: CreateRun) -> DescribeRun:
    return context.create_run(execution, body)


@router.post("/runs/{run_id}/steps", status_code=204, summary="Record a step of the run")
def add_step(
    context: ExecutionContext, execution: Execution, run_id: int, body: DescribeRunStep
) -> None:
    context.add_step(execution, run_id, body)


@router.post("/runs/{run_id}/finish", summary="End the run record")
def finish_run(
    context: ExecutionContext, execution: Execution, run_id: int, body: FinishRun
) -> DescribeRun:
    return context.finish_run(execution, run_id, body)


@router.post("/finish", status_code=204, summary="Record how the execution ended")
def finish(context: ExecutionContext, execution: Execution, body: FinishJobExecution) -> None:
    context.finish(execution, body)
