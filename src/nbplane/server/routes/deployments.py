"""The control plane API: ``/api/v1/teams/{team}/jobs``, their versions, deployment,
executions, logs, properties and secrets. Thin: every rule lives in DeploymentService."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from nbplane.auth.models import DescribeCaller
from nbplane.deployments.models import (
    CreateJob,
    DeployJob,
    DescribeDeployment,
    DescribeJob,
    DescribeJobExecution,
    DescribeSecrets,
    DescribeVersion,
    ExecuteJob,
    JobExecutionPage,
    ListJobExecutionsQuery,
    SetValues,
    UpdateDeployment,
)
from nbplane.jobs.models import MAX_OFFSET
from nbplane.server.deps import Caller, Deployments
from nbplane.server.errors import responses

router = APIRouter(prefix="/api/v1")
JOB = "/teams/{team}/jobs/{job}"
FOLLOW_POLL_SECONDS = 0.2
BINARY = {"type": "string", "format": "binary"}

Wait = Annotated[
    float,
    Query(ge=0, le=300, description="Seconds to wait for the execution to end before answering."),
]

ExecutionsQuery = Annotated[ListJobExecutionsQuery, Query()]
"""``status``, ``limit`` and ``offset`` as query parameters, checked by the model's own rules."""


@router.get("/me", summary="Who the token belongs to: user, admin, teams")
def me(caller: Caller) -> DescribeCaller:
    return caller


@router.get("/teams/{team}/jobs", summary="The team's jobs, with deployment and last execution")
def list_jobs(control: Deployments, team: str, caller: Caller) -> list[DescribeJob]:
    return control.list_jobs(caller, team)


@router.post(
    "/teams/{team}/jobs", status_code=201, summary="Create a job", responses=responses(409)
)
def create_job(control: Deployments, team: str, body: CreateJob, caller: Caller) -> DescribeJob:
    return control.create_job(caller, team, body)


@router.get(JOB, summary="A job: its deployment, schedule and last executions")
def get_job(control: Deployments, team: str, job: str, caller: Caller) -> DescribeJob:
    return control.job(caller, team, job)


@router.delete(
    JOB,
    status_code=204,
    summary="Delete a job, its versions and executions",
    responses=responses(409),
)
def delete_job(
    control: Deployments,
    team: str,
    job: str,
    caller: Caller,
    force: Annotated[
        bool, Query(description="Cancel queued and running executions first.")
    ] = False,
) -> Response:
    control.delete_job(caller, team, job, force)
    return Response(status_code=204)


@router.post(
    JOB + "/versions",
    status_code=201,
    summary="Upload a version: the zip of `nbplane job export` as the request body",
    responses={200: {"model": DescribeVersion, "description": "Uploaded before: the same bytes"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/zip": {"schema": BINARY},
                "application/octet-stream": {"schema": BINARY},
            },
        }
    },
)
async def upload(
    request: Request, control: Deployments, team: str, job: str, caller: Caller, response: Response
) -> DescribeVersion:
    archive = await request.body()
    version, created = await asyncio.to_thread(control.upload, caller, team, job, archive)
    response.status_code = 201 if created else 200
    return version


@router.get(JOB + "/versions", summary="Uploaded versions, newest first")
def versions(control: Deployments, team: str, job: str, caller: Caller) -> list[DescribeVersion]:
    return control.versions(caller, team, job)


@router.get(
    JOB + "/versions/{version}/archive",
    summary="Download a version's archive",
    response_class=Response,
    responses={200: {"content": {"application/zip": {"schema": BINARY}}}},
)
def archive(control: Deployments, team: str, job: str, version: str, caller: Caller) -> Response:
    content = control.archive(caller, team, job, version)
    return Response(
        content,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{job}-{version[:12]}.zip"'},
    )


@router.put(JOB + "/deployment", summary="Deploy a version, with schedule and arguments")
def deploy(
    control: Deployments, team: str, job: str, body: DeployJob, caller: Caller
) -> DescribeDeployment:
    return control.deploy(caller, team, job, body)


@router.patch(JOB + "/deployment", summary="Change a deployment (enable, disable, schedule...)")
def update_deployment(
    control: Deployments, team: str, job: str, body: UpdateDeployment, caller: Caller
) -> DescribeDeployment:
    return control.update_deployment(caller, team, job, body)


@router.delete(JOB + "/deployment", status_code=204, summary="Undeploy: no schedule, no runs")
def undeploy(control: Deployments, team: str, job: str, caller: Caller) -> Response:
    control.undeploy(caller, team, job)
    return Response(status_code=204)


@router.post(
    JOB + "/executions",
    status_code=201,
    summary="Execute the deployed version now",
    responses=responses(409),
)
def execute(
    control: Deployments, team: str, job: str, caller: Caller, body: ExecuteJob | None = None
) -> DescribeJobExecution:
    return control.execute(caller, team, job, body or ExecuteJob())


@router.get(JOB + "/executions", summary="The job's executions, newest first")
def executions(
    control: Deployments, team: str, job: str, caller: Caller, query: ExecutionsQuery
) -> JobExecutionPage:
    return control.executions(caller, team, job, query)


@router.get(
    "/job-executions",
    summary="Executions of the jobs of all the caller's teams (an admin: all), newest first",
)
def recent_executions(
    control: Deployments, caller: Caller, query: ExecutionsQuery
) -> JobExecutionPage:
    return control.recent_executions(caller, query)


@router.get(JOB + "/executions/{execution_id}", summary="One execution, with its steps")
async def execution(
    control: Deployments, team: str, job: str, execution_id: str, caller: Caller, wait: Wait = 0
) -> DescribeJobExecution:
    return await asyncio.to_thread(control.wait, caller, team, job, execution_id, wait)


@router.post(
    JOB + "/executions/{execution_id}/cancel",
    summary="Cancel an execution",
    responses=responses(409),
)
async def cancel(
    control: Deployments, team: str, job: str, execution_id: str, caller: Caller
) -> DescribeJobExecution:
    return await asyncio.to_thread(control.cancel, caller, team, job, execution_id)


@router.get(
    JOB + "/executions/{execution_id}/logs",
    summary="The execution's log from `offset`; `follow` streams it until the execution ends",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def logs(
    request: Request,
    control: Deployments,
    team: str,
    job: str,
    execution_id: str,
    caller: Caller,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="Character offset to read from.")
    ] = 0,
    follow: bool = False,
) -> Response:
    text, following, ended = await asyncio.to_thread(
        control.logs, caller, team, job, execution_id, offset
    )
    if not follow or ended:
        return Response(text, media_type="text/plain", headers={"X-Log-Offset": str(following)})

    async def stream() -> AsyncIterator[str]:
        position, chunk, done = following, text, False
        while True:
            if chunk:
                yield chunk
            if done or await request.is_disconnected():
                return
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
            chunk, position, done = await asyncio.to_thread(
                control.logs, caller, team, job, execution_id, position
            )

    return StreamingResponse(stream(), media_type="text/plain")


@router.get(
    JOB + "/executions/{execution_id}/html",
    summary="The execution's run as one HTML page: steps, executed notebooks, outputs",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}}},
)
async def html(
    control: Deployments, team: str, job: str, execution_id: str, caller: Caller
) -> HTMLResponse:
    return HTMLResponse(await asyncio.to_thread(control.html, caller, team, job, execution_id))


@router.get(JOB + "/properties", summary="The job's properties")
def properties(control: Deployments, team: str, job: str, caller: Caller) -> dict[str, Any]:
    return control.properties(caller, team, job)


@router.patch(JOB + "/properties", summary="Set properties; a null value removes one")
def set_properties(
    control: Deployments, team: str, job: str, body: SetValues, caller: Caller
) -> dict[str, Any]:
    return control.set_properties(caller, team, job, body.values)


@router.get(JOB + "/secrets", summary="The names of the job's secrets (values are write-only)")
def secrets(control: Deployments, team: str, job: str, caller: Caller) -> DescribeSecrets:
    return control.secrets(caller, team, job)


@router.patch(JOB + "/secrets", summary="Set secrets; a null value removes one")
def set_secrets(
    control: Deployments, team: str, job: str, body: SetValues, caller: Caller
) -> DescribeSecrets:
    return control.set_secrets(caller, team, job, body.values)
