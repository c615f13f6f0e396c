"""The admin API in-process on the real app and store: admins manage users and teams, a user
their own tokens, an admin anyone's; errors name what they are about; no answer holds a hash,
and a token's secret only the answer that made it. The first admin from NBPLANE_ADMIN_TOKEN as
the app starts. (Who may call each route is tests/security/test_access_matrix.py's.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio.from_thread import start_blocking_portal

from nbplane.errors import ConfigError
from tests.conftest import database_url
from tests.integration.test_input import App, serve

USERS, TOKENS, TEAMS = "/api/v1/users", "/api/v1/tokens", "/api/v1/teams"
ADMIN_SECRET = "a-first-admin-token-from-a-secret-0123456789"


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """alice in team analytics, the admin user, and a first admin ``root`` from the Secret."""
    monkeypatch.setenv("NBPLANE_ADMIN_TOKEN", ADMIN_SECRET)
    monkeypatch.setenv("NBPLANE_ADMIN_USER", "root")
    with database_url("sqlite", tmp_path) as url:
        yield from serve(url, tmp_path, monkeypatch)


def call(app: App, who: str, method: str, path: str, status: int, **options: Any) -> Any:
    headers = {"Authorization": f"Bearer {app.tokens.get(who, who)}"}
    answer = app.client.request(method, path, headers=headers, **options)
    assert answer.status_code == status, f"{method} {path}: {answer.status_code} {answer.text}"
    assert "hash" not in answer.text
    return answer.json() if answer.content else None


def test_the_first_admin_holds_the_secret_as_the_app_starts(app: App) -> None:
    me = call(app, ADMIN_SECRET, "GET", "/api/v1/me", 200)
    assert (me["user"], me["admin"], me["token"]) == ("root", True, "bootstrap")
    listed = call(app, ADMIN_SECRET, "GET", TOKENS, 200, params={"user": "root"})
    assert [token["name"] for token in listed] == ["bootstrap"]
    assert ADMIN_SECRET not in str(listed) and ADMIN_SECRET[:10] not in str(listed)


def test_a_short_admin_token_stops_the_app_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbplane.server.app import ServerConfig, create_app
    from nbplane.settings import get_settings

    monkeypatch.setenv("NBPLANE_ADMIN_TOKEN", "short-secret")
    get_settings.cache_clear()
    application = create_app(ServerConfig(tmp_path, f"sqlite:///{tmp_path / 'n.db'}", tmp_path))
    with start_blocking_portal() as portal, pytest.raises(ConfigError) as refused:
        portal.call(_start, application)
    assert refused.value.fields == {"field": "admin_token"}
    assert "NBPLANE_ADMIN_TOKEN must be at least 32 characters" in refused.value.message
    assert "short-secret" not in refused.value.message
    get_settings.cache_clear()


async def _start(application: Any) -> None:
    async with application.router.lifespan_context(application):
        pass


def test_admins_manage_users_and_teams(app: App) -> None:
    made = call(
        app, "admin", "POST", USERS, 201, json={"name": "bob", "teams": ["ops"], "max_sessions": 1}
    )
    assert (made["name"], made["admin"], made["teams"], made["max_sessions"]) == (
        "bob",
        False,
        ["ops"],
        1,
    )
    duplicate = call(app, "admin", "POST", USERS, 409, json={"name": "bob"})
    assert duplicate["field"] == "name" and "'bob'" in duplicate["message"]
    for body, field in [
        ({"name": "Bob Smith"}, "body.name"),
        ({"name": "carl", "teams": ["Ops Team"]}, "body.teams.0"),
        ({"name": "carl", "max_sessions": -1}, "body.max_sessions"),
        ({"name": "carl", "password": "x"}, "body.password"),
    ]:
        assert call(app, "admin", "POST", USERS, 422, json=body)["field"] == field
    assert [user["name"] for user in call(app, "admin", "GET", USERS, 200)] == [
        "admin",
        "alice",
        "bob",
        "root",
    ]
    unknown = call(app, "admin", "GET", f"{USERS}/nobody", 404)
    assert unknown["field"] == "user" and "'nobody'" in unknown["message"]
    assert call(app, "admin", "PATCH", f"{USERS}/nobody", 404, json={"admin": True})

    bob = call(app, "admin", "POST", TOKENS, 201, json={"name": "bob-ci", "user": "bob"})["token"]
    assert not call(app, bob, "GET", "/api/v1/me", 200)["admin"]  # now in the token cache
    assert call(app, "admin", "PATCH", f"{USERS}/bob", 200, json={"admin": True})["admin"]
    assert call(app, bob, "GET", "/api/v1/me", 200)["admin"], "the change shows at once"
    patched = call(app, "admin", "PATCH", f"{USERS}/bob", 200, json={"max_sessions": None})
    assert (patched["admin"], patched["max_sessions"]) == (True, None)

    joined = call(app, "admin", "PUT", f"{USERS}/bob/teams/analytics", 200)
    assert joined["teams"] == ["analytics", "ops"]
    assert call(app, bob, "GET", "/api/v1/me", 200)["teams"] == ["analytics", "ops"]
    assert call(app, "admin", "PUT", f"{USERS}/bob/teams/Bad%20Team", 422)["field"] == "path.team"
    teams = call(app, "admin", "GET", TEAMS, 200)
    assert teams == [
        {"name": "analytics", "members": ["alice", "bob"]},
        {"name": "ops", "members": ["bob"]},
    ]
    assert call(app, "alice", "GET", TEAMS, 200) == [teams[0]], "a user sees their own teams"
    left = call(app, "admin", "DELETE", f"{USERS}/bob/teams/analytics", 200)
    assert left["teams"] == ["ops"]
    not_in = call(app, "admin", "DELETE", f"{USERS}/bob/teams/analytics", 404)
    assert not_in["field"] == "team" and "'analytics'" in not_in["message"]

    for method, path in [("GET", USERS), ("GET", f"{USERS}/bob"), ("DELETE", f"{USERS}/bob")]:
        refused = call(app, "alice", method, path, 404)
        assert "managed by admins" in refused["message"]

    call(app, "admin", "DELETE", f"{USERS}/bob", 204)
    assert call(app, bob, "GET", "/api/v1/me", 401)["field"] == "authorization"
    call(app, "admin", "GET", f"{USERS}/bob", 404)
    call(app, "admin", "PATCH", f"{USERS}/admin", 200, json={"admin": False})
    last = call(app, ADMIN_SECRET, "DELETE", f"{USERS}/root", 409)
    assert "last admin" in last["message"]
    call(app, ADMIN_SECRET, "PATCH", f"{USERS}/admin", 200, json={"admin": True})


def test_users_manage_their_own_tokens_and_admins_anyones(app: App) -> None:
    expires = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    made = call(app, "alice", "POST", TOKENS, 201, json={"name": "alice-ci", "expires_at": expires})
    assert (made["user"], made["expires_at"] is not None) == ("alice", True)
    assert made["token"].startswith(made["prefix"])
    assert call(app, made["token"], "GET", "/api/v1/me", 200)["token"] == "alice-ci"
    listed = call(app, "alice", "GET", TOKENS, 200)
    assert [token["name"] for token in listed] == ["alice-member", "alice-ci"]
    assert made["token"] not in str(listed) and all("token" not in token for token in listed)
    everyone = {token["name"]: token["user"] for token in call(app, "admin", "GET", TOKENS, 200)}
    assert everyone == {
        "bootstrap": "root",
        "alice-member": "alice",
        "admin-of-tests": "admin",
        "alice-ci": "alice",
    }

    for body, status, field in [
        ({"name": "alice-ci"}, 409, "name"),
        ({"name": "has space"}, 422, "body.name"),
        ({"name": "old", "expires_at": "2020-01-01T00:00:00Z"}, 422, "expires_at"),
        ({"name": "for-admin", "user": "admin"}, 404, "user"),
    ]:
        assert call(app, "alice", "POST", TOKENS, status, json=body)["field"] == field
    assert call(app, "alice", "GET", TOKENS, 404, params={"user": "admin"})["field"] == "user"
    unknown = call(app, "admin", "POST", TOKENS, 404, json={"name": "x", "user": "nobody"})
    assert "'nobody'" in unknown["message"]

    for_alice = call(app, "admin", "POST", TOKENS, 201, json={"name": "given", "user": "alice"})
    assert call(app, for_alice["token"], "GET", "/api/v1/me", 200)["user"] == "alice"
    assert call(app, "alice", "DELETE", f"{TOKENS}/admin-of-tests", 404)["field"] == "token"
    assert call(app, "admin", "GET", "/api/v1/me", 200)["user"] == "admin"
    call(app, "alice", "DELETE", f"{TOKENS}/alice-ci", 204)
    assert call(app, made["token"], "GET", "/api/v1/me", 401), "refused at once, not cached"
    call(app, "alice", "DELETE", f"{TOKENS}/alice-ci", 404)
    call(app, "admin", "DELETE", f"{TOKENS}/given", 204)
    assert call(app, for_alice["token"], "GET", "/api/v1/me", 401)


def test_every_new_route_documents_its_errors(app: App) -> None:
    paths = app.client.get("/openapi.json").json()["paths"]
    for path, method, statuses in [
        (USERS, "post", {"401", "403", "404", "409", "422"}),
        (f"{USERS}/{{user}}", "patch", {"401", "404", "409", "422"}),
        (f"{USERS}/{{user}}", "delete", {"404", "409"}),
        (TOKENS, "post", {"401", "404", "409", "422"}),
        (f"{TOKENS}/{{name}}", "delete", {"401", "404"}),
        (TEAMS, "get", {"401"}),
    ]:
        assert statuses <= set(paths[path][method]["responses"]), f"{method} {path}"
    tags = {paths[path][method]["tags"][0] for path, method in [(USERS, "get"), (TEAMS, "get")]}
    assert tags == {"users", "teams"}


def test_no_token_no_answer(app: App) -> None:
    for method, path in [("GET", USERS), ("GET", TEAMS), ("GET", TOKENS)]:
        answer = app.client.request(method, path)
        assert answer.status_code == 401 and isinstance(answer, httpx.Response)
