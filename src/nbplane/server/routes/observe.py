"""Health and metrics for load balancers, Kubernetes probes and Prometheus; no token, since
they tell nothing about anyone: liveness says ok, readiness names its checks, and the metrics
are aggregate counts labelled by status, method and route template only."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from nbplane.server.observe import DescribeReadiness, readiness

router = APIRouter()


@router.get("/health", summary="Liveness (as /health/live)")
@router.get("/health/live", summary="Liveness: the process serves requests")
def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/health/ready",
    summary="Readiness: the database answers, the schema is at head, the loops and worker run",
    response_model=DescribeReadiness,
    responses={503: {"model": DescribeReadiness, "description": "A check failed; it is named."}},
)
async def ready(request: Request) -> JSONResponse:
    found = await readiness(request.app.state.readiness)
    return JSONResponse(found.model_dump(), status_code=200 if found.status == "ok" else 503)


@router.get(
    "/metrics",
    summary="Metrics in Prometheus' text format (aggregate counts, no names)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "The metrics."}},
)
def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
