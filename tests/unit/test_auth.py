"""The auth service in-process on a real database: users and teams, tokens and who they speak
for, and the OAuth claims that name a user and their teams (the CLI and server tests cover the
same through their doors, in seconds rather than milliseconds)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import update

from nbplane.auth.admin import AuthAdmin, bootstrap_admin
from nbplane.auth.logins import teams_of, username
from nbplane.auth.models import (
    ADMIN,
    BOOTSTRAP_TOKEN,
    CreateToken,
    DescribeCaller,
    UpdateUser,
)
from nbplane.auth.service import AuthService
from nbplane.errors import ConfigError, Conflict, InvalidInput, NotFound, Unauthorized
from nbplane.settings import get_settings
from nbplane.store import Store, open_store
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
    with pytest.raises(Conflict, match="exists already"):
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


def test_an_identity_source_names_the_user_and_their_teams() -> None:
    assert username("carol") == "carol"
    for unusable in ("", "  ", None, 3, "x" * 256):
        with pytest.raises(Unauthorized, match="no usable user name"):
            username(unusable)
    with pytest.raises(Unauthorized, match="built-in admin"):
        username(ADMIN)
    assert teams_of(["sales", "Domain Users", 3, "ops"]) == {"sales", "ops"}
    assert teams_of("sales") == {"sales"}
    assert teams_of({"sales": True}) == set()


SECRET = "s" * 20 + "-first-admin-secret"
"""At least 32 characters, as NBPLANE_ADMIN_TOKEN must be."""


def bootstrap(auth: AuthService, token: str, user: str = "root") -> None:
    settings = get_settings().model_copy(
        update={"admin_token": SecretStr(token), "admin_user": user}
    )
    bootstrap_admin(auth, settings)


def test_the_first_admin_comes_from_the_secret_once_and_follows_its_rotation(
    auth: AuthService,
) -> None:
    bootstrap(auth, SECRET + "\n")  # a Secret made from a file ends with a newline
    caller = auth.authenticate(SECRET)
    assert caller is not None and (caller.user, caller.admin, caller.token) == (
        "root",
        True,
        BOOTSTRAP_TOKEN,
    )
    [first] = auth.list_tokens()
    bootstrap(auth, SECRET)  # a restart
    assert auth.list_tokens() == [first], "a restart with the same Secret changes nothing"

    rotated = SECRET + "-rotated"
    bootstrap(auth, rotated)
    assert auth.authenticate(SECRET) is None, "the old value no longer works"
    assert auth.authenticate(rotated) is not None
    assert [(t.name, t.user, t.revoked_at) for t in auth.list_tokens()] == [
        (BOOTSTRAP_TOKEN, "root", None)
    ]

    assert auth.revoke_token(BOOTSTRAP_TOKEN)
    bootstrap(auth, rotated)
    assert auth.authenticate(rotated) is None, "a revoked token stays revoked at restart"
    bootstrap(auth, SECRET)
    assert auth.authenticate(SECRET) is not None, "a new value in the Secret works again"


def test_the_secret_makes_an_existing_user_an_admin(auth: AuthService) -> None:
    auth.create_user("root", teams=("ops",))
    bootstrap(auth, SECRET)
    assert auth.user("root").admin and auth.user("root").teams == ["ops"]


@pytest.mark.parametrize(
    ("token", "user", "field"),
    [
        ("too-short", "root", "admin_token"),
        (" " * 40, "root", "admin_token"),
        (SECRET, "a b", "admin_user"),
    ],
)
def test_a_bad_admin_secret_is_refused_naming_the_setting(
    auth: AuthService, token: str, user: str, field: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        bootstrap(auth, token, user)
    assert refused.value.fields["field"] == field
    assert f"NBPLANE_{field.upper()}" in refused.value.message
    assert SECRET not in refused.value.message
    assert auth.list_users() == []


def test_replicas_starting_at_once_make_one_admin_and_one_token(
    auth: AuthService, tmp_path: Path
) -> None:
    """Four replicas, each with its own engine (as separate processes have), bootstrap at the
    same moment on a fresh database: one user, one token, and every replica started."""
    url = auth.store.engine.url.render_as_string(hide_password=False)
    replicas = [open_store(url) for _ in range(4)]
    barrier = threading.Barrier(len(replicas))
    failures: list[BaseException] = []

    def start(store: Store) -> None:
        barrier.wait()
        try:
            bootstrap(AuthService(store), SECRET)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(store,)) for store in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for store in replicas:
        store.close()
    assert not failures, failures
    assert [user.name for user in auth.list_users()] == ["root"]
    assert [token.name for token in auth.list_tokens()] == [BOOTSTRAP_TOKEN]
    assert auth.authenticate(SECRET) is not None


def test_a_user_manages_only_their_own_tokens_and_admins_everyone(auth: AuthService) -> None:
    auth.create_user("alice", teams=("sales",))
    auth.create_user("ben", admin=True)
    alice = AuthAdmin(auth, DescribeCaller(user="alice", admin=False, teams=["sales"]))
    ben = AuthAdmin(auth, DescribeCaller(user="ben", admin=True, teams=[]))
    made = alice.create_token(CreateToken(name="alice-ci"))
    assert made.user == "alice" and auth.authenticate(made.token) is not None
    with pytest.raises(NotFound, match="'ben'"):
        alice.create_token(CreateToken(name="for-ben", user="ben"))
    with pytest.raises(InvalidInput) as past:
        alice.create_token(CreateToken(name="old", expires_at=datetime.now(UTC)))
    assert past.value.fields["field"] == "expires_at"
    ben.create_token(CreateToken(name="ben-ci"))
    assert [t.name for t in alice.list_tokens()] == ["alice-ci"]
    assert [t.name for t in ben.list_tokens()] == ["alice-ci", "ben-ci"]
    with pytest.raises(NotFound):
        alice.list_tokens("ben")
    with pytest.raises(NotFound, match="no live token"):
        alice.revoke_token("ben-ci")
    ben.revoke_token("alice-ci")
    assert auth.authenticate(made.token) is None
    auth.create_user("carol", teams=("ops",))
    assert [(t.name, t.members) for t in alice.list_teams()] == [("sales", ["alice"])]
    assert [t.name for t in ben.list_teams()] == ["ops", "sales"]
    with pytest.raises(NotFound, match="managed by admins"):
        alice.list_users()
    with pytest.raises(Conflict, match="last admin"):
        ben.update_user("ben", UpdateUser(admin=False))
    with pytest.raises(Conflict, match="last admin"):
        ben.delete_user("ben")
    ben.delete_user("alice")
    assert [user.name for user in ben.list_users()] == ["ben", "carol"]
    assert [t.user for t in ben.list_tokens()] == ["ben"], "alice's tokens went with her"
