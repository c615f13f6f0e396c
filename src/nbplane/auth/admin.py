"""Managing users, teams and tokens as a caller may: admins manage everyone, a user only their
own tokens. The rules of ``/api/v1/users``, ``/api/v1/teams`` and ``/api/v1/tokens``, and of
``nbplane user``/``nbplane token`` on the local store (whose operator acts as the admin), so
both doors answer alike; the HTTP client has the same methods (``ManageAuth``), which lets the
CLI speak to either. Also the first admin's bootstrap from ``NBPLANE_ADMIN_TOKEN``."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from nbplane._time import now
from nbplane.auth.models import (
    ADMIN,
    ADMIN_TOKEN_MIN_LENGTH,
    BOOTSTRAP_TOKEN,
    USER_NAME_PATTERN,
    CreateToken,
    CreateUser,
    DescribeCaller,
    DescribeNewToken,
    DescribeTeam,
    DescribeToken,
    DescribeUser,
    UpdateUser,
)
from nbplane.auth.service import AuthService
from nbplane.errors import ConfigError, Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    from nbplane.settings import Settings

log = logging.getLogger("nbplane.auth")

LOCAL_ADMIN = DescribeCaller(user=ADMIN, admin=True, teams=[])
"""Who ``nbplane user``/``nbplane token`` act as on the local store: its tokens default to the
built-in admin user, as they always did."""


class ManageAuth(Protocol):
    """What the CLI asks of users, teams and tokens: ``AuthAdmin`` on the local store, or the
    server's API through ``NbplaneClient``."""

    def list_users(self) -> list[DescribeUser]: ...
    def create_user(self, request: CreateUser) -> DescribeUser: ...
    def get_user(self, name: str) -> DescribeUser: ...
    def update_user(self, name: str, changes: UpdateUser) -> DescribeUser: ...
    def delete_user(self, name: str) -> None: ...
    def join_team(self, user: str, team: str) -> DescribeUser: ...
    def leave_team(self, user: str, team: str) -> DescribeUser: ...
    def list_teams(self) -> list[DescribeTeam]: ...
    def create_token(self, request: CreateToken) -> DescribeNewToken: ...
    def list_tokens(self, user: str | None = None) -> list[DescribeToken]: ...
    def revoke_token(self, name: str) -> None: ...


class AuthAdmin:
    """``caller``'s view of users, teams and tokens. ``forget`` is told of every user or token
    whose rights changed, so the server's token cache drops them at once."""

    def __init__(
        self,
        service: AuthService,
        caller: DescribeCaller,
        forget: Callable[[str | None, str | None], None] = lambda user, token: None,
    ) -> None:
        self.service = service
        self.caller = caller
        self.forget = forget

    def _admins_only(self) -> None:
        """Users are an admin's business; anyone else is told there is nothing here."""
        if not self.caller.admin:
            raise NotFound("users and teams are managed by admins", field="user")

    def _own_or_admin(self, user: str) -> None:
        if user != self.caller.user and not self.caller.admin:
            raise NotFound(f"no user named {user!r}", field="user")

    # users
    def list_users(self) -> list[DescribeUser]:
        self._admins_only()
        return self.service.list_users()

    def create_user(self, request: CreateUser) -> DescribeUser:
        self._admins_only()
        return self.service.create_user(
            request.name,
            admin=request.admin,
            teams=tuple(request.teams),
            max_sessions=request.max_sessions,
        )

    def get_user(self, name: str) -> DescribeUser:
        self._admins_only()
        return self.service.user(name)

    def update_user(self, name: str, changes: UpdateUser) -> DescribeUser:
        self._admins_only()
        if changes.admin is False:
            self._keep_an_admin(name, "take admin rights from")
        updated = self.service.store.update_user(name, changes)
        self.forget(name, None)
        return updated

    def delete_user(self, name: str) -> None:
        self._admins_only()
        self._keep_an_admin(name, "delete")
        self.service.store.delete_user(name)
        self.forget(name, None)

    def _keep_an_admin(self, name: str, action: str) -> None:
        """Refuse to leave nbplane without an admin, who alone could repair that."""
        others = [user.name for user in self.service.list_users() if user.admin]
        if self.service.user(name).admin and others == [name]:
            raise Conflict(f"cannot {action} {name!r}: the last admin", field="user")

    def join_team(self, user: str, team: str) -> DescribeUser:
        self._admins_only()
        self.service.join(user, team)
        self.forget(user, None)
        return self.service.user(user)

    def leave_team(self, user: str, team: str) -> DescribeUser:
        self._admins_only()
        if not self.service.leave(user, team):
            raise NotFound(f"{user!r} is not in team {team!r}", field="team")
        self.forget(user, None)
        return self.service.user(user)

    # teams
    def list_teams(self) -> list[DescribeTeam]:
        """Every team for an admin; the caller's own teams, with their members, otherwise."""
        teams = self.service.store.list_teams()
        if self.caller.admin:
            return teams
        return [team for team in teams if team.name in self.caller.teams]

    # tokens
    def create_token(self, request: CreateToken) -> DescribeNewToken:
        user = request.user or self.caller.user
        self._own_or_admin(user)
        if request.expires_at is not None and request.expires_at <= now():
            raise InvalidInput(
                f"expires_at {request.expires_at:%Y-%m-%d %H:%M:%S} UTC is not in the future",
                field="expires_at",
            )
        described, secret = self.service.create_token(request.name, user, request.expires_at)
        return DescribeNewToken(**described.model_dump(), token=secret)

    def list_tokens(self, user: str | None = None) -> list[DescribeToken]:
        """An admin's: every token, or ``user``'s; anyone else's: their own."""
        if user is not None:
            self._own_or_admin(user)
        elif not self.caller.admin:
            user = self.caller.user
        return self.service.store.list_tokens(user)

    def revoke_token(self, name: str) -> None:
        mine = None if self.caller.admin else self.caller.user
        if not self.service.store.revoke_token(name, mine):
            raise NotFound(f"no live token named {name!r}", field="token")
        self.forget(None, name)


def bootstrap_admin(service: AuthService, settings: Settings) -> None:
    """With NBPLANE_ADMIN_TOKEN set: its user exists, is an admin and holds that token (the
    first admin of a fresh install, the same again at every start, a new token when the Secret
    changed). Safe when several replicas start at once (see ``ensure_admin_token``)."""
    wanted = admin_secret(settings)
    if wanted is None:
        return
    user, secret = wanted
    outcome = service.store.ensure_admin_token(user, secret, BOOTSTRAP_TOKEN)
    if outcome == "revoked":
        log.warning(
            "NBPLANE_ADMIN_TOKEN holds a revoked token, which stays revoked: put a new value "
            "in the Secret to log in as %r with it",
            user,
        )
    else:
        log.info("first admin %r: token %r %s", user, BOOTSTRAP_TOKEN, outcome)


def admin_secret(settings: Settings) -> tuple[str, str] | None:
    """The user and token NBPLANE_ADMIN_USER and NBPLANE_ADMIN_TOKEN ask for, checked (None
    when no token is set)."""
    if settings.admin_token is None:
        return None
    secret = settings.admin_token.get_secret_value().strip()
    if len(secret) < ADMIN_TOKEN_MIN_LENGTH:
        raise ConfigError(
            f"NBPLANE_ADMIN_TOKEN must be at least {ADMIN_TOKEN_MIN_LENGTH} characters (it has "
            f"{len(secret)}); make one with `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`",
            field="admin_token",
        )
    if not re.match(USER_NAME_PATTERN, settings.admin_user):
        raise ConfigError(
            f"NBPLANE_ADMIN_USER {settings.admin_user!r} must be 1-255 letters, digits, '_', "
            "'.', '@', '+', '-', starting with a letter or digit",
            field="admin_user",
        )
    return settings.admin_user, secret
