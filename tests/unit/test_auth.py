"""The auth service in-process on a real database: users and teams, tokens and who they speak
for, and the OAuth claims that name a user and their teams (the CLI and server tests cover the
same through their doors, in seconds rather than milliseconds)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from nbplane.auth.models import ADMIN
from nbplane.auth.oauth import teams_of, username
from nbplane.auth.service import AuthService
from nbplane.errors import ConfigError, Conflict, NotFound, Unauthorized
from nbplane.store import open_store
from nbplane.store.tables import api_tokens
from tests.conftest import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
def auth(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuthService]:
    with database_url(request.param, tmp_path) as url:
        store = open_store(url)
        try:
            yield AuthService(store)
        finally:
            store.close()


def test_users_and_their_teams(auth: AuthService) -> None:
    made = auth.create_user("alice", teams=("sales", "ops"), max_sessions=2)
    assert (made.teams, made.admin, made.max_sessions) == (["ops", "sales"], False, 2)
    auth.create_user("ben", admin=True)
    with pytest.raises(Conflict):
        auth.create_user("alice")
    auth.join("ben", "ops")
    auth.leave("alice", "sales")
    assert [(u.name, u.teams) for u in auth.list_users()] == [("alice", ["ops"]), ("ben", ["ops"])]
    assert auth.set_teams("alice", {"data", "ops"}).teams == ["data", "ops"]
    assert auth.set_max_sessions("alice", None).max_sessions is None


def test_a_bad_team_name_is_refused_before_the_user_is_made(auth: AuthService) -> None:
    with pytest.raises(ConfigError) as refused:
        auth.create_user("carol", teams=("Sales Team",))
    assert refused.value.fields["field"] == "team"
    with pytest.raises(NotFound):
        auth.user("carol")
    with pytest.raises(NotFound, match="nbplane user create"):
        auth.join("nobody", "sales")


def test_a_token_speaks_for_its_user_until_revoked(auth: AuthService) -> None:
    auth.create_user("alice", teams=("sales",))
    expires_at = datetime.now(UTC) + timedelta(days=1)
    described, secret = auth.create_token("alice-laptop", "alice", expires_at)
    assert secret.startswith("nbp_") and secret.startswith(described.prefix)
    caller = auth.authenticate(secret)
    assert caller is not None
    assert (caller.user, caller.admin, caller.teams, caller.token) == (
        "alice",
        False,
        ["sales"],
        "alice-laptop",
    )
    assert caller.token_expires_at is not None
    assert abs(caller.token_expires_at - expires_at) < timedelta(seconds=1)
    with pytest.raises(ConfigError, match="exists already"):
        auth.create_token("alice-laptop", "alice")
    assert auth.authenticate(secret + "x") is None
    assert auth.revoke_token("alice-laptop")
    assert not auth.revoke_token("alice-laptop"), "only a live token is revoked"
    assert auth.authenticate(secret) is None
    [listed] = auth.list_tokens()
    assert listed.name == "alice-laptop" and listed.revoked_at is not None


def test_the_admin_is_made_on_first_use_and_owns_tokens_without_a_user(
    auth: AuthService,
) -> None:
    _, secret = auth.create_token("root")
    assert auth.user(ADMIN).admin
    with auth.store.engine.begin() as connection:  # a token made before users existed
        connection.execute(update(api_tokens).values(user_id=None))
    caller = auth.authenticate(secret)
    assert caller is not None and (caller.user, caller.admin) == (ADMIN, True)


def test_oauth_claims_name_the_user_and_their_teams() -> None:
    assert username({"preferred_username": "carol", "sub": "1"}, "preferred_username") == "carol"
    assert username({"sub": "1"}, "preferred_username") == "1"
    with pytest.raises(Unauthorized, match="built-in admin"):
        username({"preferred_username": ADMIN}, "preferred_username")
    assert teams_of(["sales", "Domain Users", 3, "ops"]) == {"sales", "ops"}
    assert teams_of("sales") == {"sales"}
    assert teams_of({"sales": True}) == set()
