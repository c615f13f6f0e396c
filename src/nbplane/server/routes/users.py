"""``/api/v1/users`` and ``/api/v1/teams``: admins manage users and their teams. Thin: the
rules live in auth.admin."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from nbplane.auth.models import CreateUser, DescribeTeam, DescribeUser, UpdateUser
from nbplane.platform.names import NAME_PATTERN
from nbplane.server.deps import ManageAsCaller
from nbplane.server.errors import responses

router = APIRouter(prefix="/api/v1/users")
teams = APIRouter(prefix="/api/v1/teams")

UserPath = Annotated[str, Path(min_length=1, max_length=255, description="The user's name.")]
TeamPath = Annotated[str, Path(pattern=NAME_PATTERN, description="The team's name.")]


@router.get("", summary="Users with their teams (admins)", responses=responses(404))
def list_users(manage: ManageAsCaller) -> list[DescribeUser]:
    return manage.list_users()


@router.post(
    "",
    status_code=201,
    summary="Create a user, in the teams given (admins)",
    responses=responses(404, 409),
)
def create_user(manage: ManageAsCaller, body: CreateUser) -> DescribeUser:
    return manage.create_user(body)


@router.get("/{user}", summary="A user (admins)")
def get_user(manage: ManageAsCaller, user: UserPath) -> DescribeUser:
    return manage.get_user(user)


@router.patch(
    "/{user}",
    summary="Make a user an admin or not, or set their session limit (admins)",
    responses=responses(409),
)
def update_user(manage: ManageAsCaller, user: UserPath, body: UpdateUser) -> DescribeUser:
    return manage.update_user(user, body)


@router.delete(
    "/{user}",
    status_code=204,
    summary="Delete a user with their tokens and memberships (admins); never the last admin",
    responses=responses(409),
)
def delete_user(manage: ManageAsCaller, user: UserPath) -> Response:
    manage.delete_user(user)
    return Response(status_code=204)


@router.put("/{user}/teams/{team}", summary="Add a user to a team (admins)")
def join_team(manage: ManageAsCaller, user: UserPath, team: TeamPath) -> DescribeUser:
    return manage.join_team(user, team)


@router.delete("/{user}/teams/{team}", summary="Remove a user from a team (admins)")
def leave_team(manage: ManageAsCaller, user: UserPath, team: TeamPath) -> DescribeUser:
    return manage.leave_team(user, team)


@teams.get("", summary="Teams with their members: all for an admin, else the caller's own")
def list_teams(manage: ManageAsCaller) -> list[DescribeTeam]:
    return manage.list_teams()
