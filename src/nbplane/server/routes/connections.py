"""The connections API (admins): ``/api/v1/connections``. Values go in, only key names come out."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from nbplane.server.deps import Caller, Connections
from nbplane.server.errors import responses
from nbplane.sessions.models import CreateConnection, DescribeConnection, GrantConnection

router = APIRouter(prefix="/api/v1/connections")


@router.post(
    "",
    status_code=201,
    summary="Define a named connection (admins)",
    responses=responses(404, 409),
)
def create(connections: Connections, body: CreateConnection, who: Caller) -> DescribeConnection:
    return connections.create(who, body)


@router.get(
    "", summary="Connections with their key names and grants (admins)", responses=responses(404)
)
def list_connections(connections: Connections, who: Caller) -> list[DescribeConnection]:
    return connections.list_connections(who)


@router.get("/{name}", summary="A connection, without its values (admins)")
def get(connections: Connections, name: str, who: Caller) -> DescribeConnection:
    return connections.get(who, name)


@router.delete("/{name}", status_code=204, summary="Delete a connection and its grants (admins)")
def delete(connections: Connections, name: str, who: Caller) -> Response:
    connections.delete(who, name)
    return Response(status_code=204)


@router.post("/{name}/grants", summary="Grant a connection to a user or a team (admins)")
def grant(
    connections: Connections, name: str, body: GrantConnection, who: Caller
) -> DescribeConnection:
    return connections.grant(who, name, body)


@router.delete("/{name}/grants", summary="Revoke a grant (admins); body as for granting")
def revoke(
    connections: Connections, name: str, body: GrantConnection, who: Caller
) -> DescribeConnection:
    return connections.revoke(who, name, body)
