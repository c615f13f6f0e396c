"""The browser's side of the API on a real server: sign-in cookie, the CSRF header it needs for
changes, sign-out, the page's files, and the caller's job executions across their teams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import database_url
from tests.integration.server_fixture import Server, nbplane, running_server
from tests.integration.test_control import completed_execution, job_archive

CSRF = {"X-Nbplane-Csrf": "1"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    with database_url(request.param, tmp_path) as url:
        store_url = url if url.startswith("postgresql") else f"sqlite:///{tmp_path / 'nb.db'}"
        notebooks = tmp_path / "apis"
        notebooks.mkdir()
        with running_server(
            notebooks, tmp_path / "home", store_url, environment={"NBPLANE_SESSION_POOL_SIZE": "0"}
        ) as running:
            yield running


def browser(server: Server) -> httpx.Client:
    """A client without the bearer header, keeping cookies like a browser."""
    return httpx.Client(base_url=server.url, timeout=60)


def user_token(server: Server, user: str, *teams: str) -> str:
    options = [option for team in teams for option in ("--team", team)]
    nbplane("user", "create", user, *options, environment=server.environment)
    return nbplane(
        "token", "create", f"{user}-token", "--user", user, environment=server.environment
    ).stdout.strip()


def test_sign_in_cookie_csrf_and_sign_out(server: Server) -> None:
    token = user_token(server, "alice", "sales")
    with browser(server) as client:
        anonymous = client.get("/api/v1/me")
        assert anonymous.status_code == 401 and anonymous.json()["field"] == "authorization"

        wrong = client.post("/api/v1/auth/sign-in", json={"token": "nbp_wrong"}, headers=CSRF)
        assert wrong.status_code == 401, wrong.text
        assert "unknown or revoked" in wrong.json()["message"] and "set-cookie" not in wrong.headers
        empty = client.post("/api/v1/auth/sign-in", json={"token": ""}, headers=CSRF)
        assert empty.status_code == 422 and "/body/token" in empty.json()["message"]
        no_header = client.post("/api/v1/auth/sign-in", json={"token": token})
        assert no_header.status_code == 403 and "set-cookie" not in no_header.headers

        signed = client.post("/api/v1/auth/sign-in", json={"token": token}, headers=CSRF)
        assert signed.status_code == 200, signed.text
        assert signed.json()["user"] == "alice" and signed.json()["teams"] == ["sales"]
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert "secure" not in cookie, "plain http on loopback: no Secure flag"
        assert token not in signed.text, "the token is not echoed back"

        assert client.get("/api/v1/me").json()["user"] == "alice"
        forged = client.post("/api/v1/teams/sales/jobs", json={"name": "daily"})
        assert forged.status_code == 403, forged.text
        assert forged.json()["field"] == "x-nbplane-csrf"
        assert client.get("/api/v1/teams/sales/jobs").json() == [], "the forged POST made nothing"
        made = client.post("/api/v1/teams/sales/jobs", json={"name": "daily"}, headers=CSRF)
        assert made.status_code == 201, made.text

        out = client.post("/api/v1/auth/sign-out")
        assert out.status_code == 204 and "nbplane_token=" in out.headers["set-cookie"]
        assert client.get("/api/v1/me").status_code == 401

    with browser(server) as client:
        client.cookies.set("nbplane_token", "nbp_revoked_or_made_up")
        stale = client.get("/api/v1/me")
        assert stale.status_code == 401 and stale.json()["field"] == "cookie"
    bearer = server.client.post("/api/v1/teams/ops/jobs", json={"name": "nightly"})
    assert bearer.status_code == 201, "a bearer token needs no CSRF header"


def test_page_and_its_files(server: Server) -> None:
    with browser(server) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        for asset, kind in (("/web/console/main.js", "javascript"), ("/web/style.css", "text/css")):
            answer = client.get(asset)
            assert answer.status_code == 200 and kind in answer.headers["content-type"], asset
            assert asset in page.text
        assert client.get("/web/missing.js").status_code == 404
        api = client.get("/api/v1/me")
        assert api.headers["content-security-policy"] == "sandbox"
        assert "http://" not in page.text and "https://" not in page.text, "nothing external"
        no_oauth = client.get("/nbplane/oauth/login")
        assert no_oauth.status_code == 303 and no_oauth.headers["location"].startswith("/#error=")
        assert "NBPLANE_OAUTH_AUTHORIZE_URL" in no_oauth.headers["location"]


def test_job_executions_of_the_callers_teams(server: Server, tmp_path: Path) -> None:
    tokens = {
        "alice": user_token(server, "alice", "sales"),
        "bob": user_token(server, "bob", "ops", "sales"),
        "carol": user_token(server, "carol"),
    }
    archive = job_archive(tmp_path, "print('hi')")
    started = {
        team: completed_execution(server, archive, team, job)["id"]
        for team, job in (("sales", "daily"), ("ops", "nightly"))
    }

    def listed(user: str, **params: str | int) -> Any:
        answer = httpx.get(
            f"{server.url}/api/v1/job-executions",
            params=params,
            headers={"Authorization": f"Bearer {tokens[user]}"},
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    alice = listed("alice")
    assert [item["id"] for item in alice["items"]] == [started["sales"]]
    assert alice["total"] == 1
    bob = listed("bob")
    assert [item["id"] for item in bob["items"]] == [started["ops"], started["sales"]]
    assert bob["items"][0]["steps"][0]["status"] == "succeeded"
    assert listed("bob", limit=1, offset=1)["items"][0]["id"] == started["sales"]
    assert listed("bob", status="failed") == {"items": [], "total": 0, "limit": 50, "offset": 0}
    assert listed("carol")["items"] == [] and listed("carol")["total"] == 0
    admin = server.client.get("/api/v1/job-executions").json()
    assert {item["id"] for item in admin["items"]} == set(started.values())
    bad = server.client.get("/api/v1/job-executions", params={"limit": 0, "status": "nope"})
    assert bad.status_code == 422 and "limit" in bad.text and "status" in bad.text
    assert httpx.get(f"{server.url}/api/v1/job-executions").status_code == 401
