"""``/api/v1/tokens``: a user lists, creates and revokes their own tokens, an admin anyone's.
Only a token's first characters are ever shown, except its secret once, at creation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from nbplane.auth.models import CreateToken, DescribeNewToken, DescribeToken
from nbplane.server.deps import ManageAsCaller
from nbplane.server.errors import responses

router = APIRouter(prefix="/api/v1/tokens")


@router.get(
    "",
    summary="Tokens without their secrets: the caller's own, or (admins) everyone's",
    responses=responses(404),
)
def list_tokens(
    manage: ManageAsCaller,
    user: Annotated[
        str | None, Query(max_length=255, description="Only this user's (admins; default: all).")
    ] = None,
) -> list[DescribeToken]:
    return manage.list_tokens(user)


@router.post(
    "",
    status_code=201,
    summary="Create a token of the caller's own, or (admins) of any user; its secret is in "
    "this answer only",
    responses=responses(404, 409),
)
def create_token(manage: ManageAsCaller, body: CreateToken) -> DescribeNewToken:
    return manage.create_token(body)


@router.delete(
    "/{name}",
    status_code=204,
    summary="Revoke a live token: the caller's own, or (admins) anyone's",
)
def revoke_token(
    manage: ManageAsCaller,
    name: Annotated[str, Path(min_length=1, max_length=255, description="The token's name.")],
) -> Response:
    manage.revoke_token(name)
    return Response(status_code=204)
