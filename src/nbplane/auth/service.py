"""What can be done to users, teams and API tokens: the one entry for ``nbplane user``,
``nbplane token`` and the server (bearer tokens, OAuth logins), so the rules (which team names
are valid, who the built-in admin is) hold whichever door an operation comes through."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from nbplane.auth.models import ADMIN, DescribeCaller, DescribeToken, DescribeUser
from nbplane.errors import ConfigError
from nbplane.platform.names import check_name

if TYPE_CHECKING:
    from nbplane.store import Store


class AuthService:
    def __init__(self, store: Store) -> None:
        self.store = store.auth

    # users and teams
    def create_user(
        self,
        name: str,
        admin: bool = False,
        teams: tuple[str, ...] = (),
        max_sessions: int | None = None,
    ) -> DescribeUser:
        """A new user in ``teams`` (a team exists from its first member on)."""
        for team in teams:
            team_name(team)
        self.store.create_user(name, admin=admin, max_sessions=max_sessions)
        for team in teams:
            self.store.add_member(name, team)
        return self.store.user(name)

    def user(self, name: str) -> DescribeUser:
        return self.store.user(name)

    def list_users(self) -> list[DescribeUser]:
        return self.store.list_users()

    def set_max_sessions(self, name: str, max_sessions: int | None) -> DescribeUser:
        """How many sessions the user may run at once (None: the server's default)."""
        return self.store.set_max_sessions(name, max_sessions)

    def join(self, user: str, team: str) -> None:
        self.store.add_member(user, team_name(team))

    def leave(self, user: str, team: str) -> bool:
        """False when the user was not in the team."""
        return self.store.remove_member(user, team)

    def set_teams(self, user: str, teams: set[str]) -> DescribeUser:
        """Make the user a member of exactly ``teams``."""
        current = set(self.store.user(user).teams)
        for team in sorted(teams - current):
            self.join(user, team)
        for team in sorted(current - teams):
            self.leave(user, team)
        return self.store.user(user)

    # tokens
    def create_token(
        self, name: str, user: str = ADMIN, expires_at: datetime | None = None
    ) -> tuple[DescribeToken, str]:
        """A token of ``user`` (the admin user is made on first use) and its secret, which is
        shown this once."""
        return self.store.create_token(name, user, expires_at)

    def list_tokens(self) -> list[DescribeToken]:
        return self.store.list_tokens()

    def revoke_token(self, name: str) -> bool:
        """Requests with the token are refused from now on; False when no live token has this
        name."""
        return self.store.revoke_token(name)

    def authenticate(self, token: str) -> DescribeCaller | None:
        """Who a live token speaks for (an expired one too: its expiry is on the caller)."""
        return self.store.authenticate(token)


def team_name(value: str) -> str:
    """A team name the rest of nbplane accepts (it becomes a label and a URL segment)."""
    try:
        return check_name(value, "team")
    except ValueError as exc:
        raise ConfigError(str(exc), field="team") from None


@contextmanager
def open_auth(store_url: str) -> Iterator[AuthService]:
    """The service over nbplane's database at ``store_url``, closed after use (the CLI's way
    in, which administers the database directly)."""
    from nbplane.store import open_store

    store = open_store(store_url)
    try:
        yield AuthService(store)
    finally:
        store.close()
