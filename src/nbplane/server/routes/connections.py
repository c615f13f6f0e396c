"""The connections API (admins): ``/api/v1/connections``. Values go in, only key names come out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from nbplane.server.auth import Caller
from nbplane.server.errors import responses
from nbplane.sessions.connections import ConnectionService
from nbplane.sessions.models import CreateConnection, DescribeConnection, GrantConnection

router = APIRouter(prefix="/api/v1/connections")


def connections(request: Request) -> ConnectionService:
    service: ConnectionService = request.app.state.sessions.connections
    return service


@router.post(
    "",
    status_code=201,
    summary="Define a named connection (admins)",
    responses=responses(404, 409),
)
def create(request: Request, body: CreateConnection, who: Caller) -> DescribeConnection:
    return connections(request).create(who, body)


@router.get(
    "", summary="Connections with their key names and grants (admins)", responses=responses(404)
)
def list_connections(request: Request, who: Caller) -> list[DescribeConnection]:
    return connections(request).list_connections(who)


@router.get("/{name}", summary="A connection, without its values (admins)")
def get(request: Request, name: str, who: Caller) -> DescribeConnection:
    return connections(request).get(who, name)


@router.delete("/{name}", status_code=204, summary="Delete a connection and its grants (admins)")
def delete(request: Request, name: str, who: Caller) -> Response:
    connections(request).delete(who, name)
    return Response(status_code=204)


@router.post("/{name}/grants", summary="Grant a connection to a user or a team (admins)")
def grant(request: Request, name: str, body: GrantConnection, who: Caller) -> DescribeConnection:
    return connections(request).grant(who, name, body)


@router.delete("/{name}/grants", summary="Revoke a grant (admins); body as for granting")
def revoke(request: Request, name: str, body: GrantConnection, who: Caller) -> DescribeConnection:
    return connections(request).revoke(who, name, body)
