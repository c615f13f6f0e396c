"""Bad input is refused at the door, never stored, never a 500; tokens that end; a per-user
limit of running sessions; an OpenAPI document that lists what each operation answers.

In-process (FastAPI's TestClient) against the real app and a real SQLite store: no worker, no
control plane; sessions run a command that fails at once."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from tests.conftest import BACKENDS, Env, database_url, in_process_store
from tests.integration.job_archives import RUNNABLE, broken_crc, job_archive

TEAM, JOB = "analytics", "daily"
BASE = f"/api/v1/teams/{TEAM}/jobs"
LONE = '"\\ud800"'
"""A lone surrogate as JSON spells it: valid JSON, but no UTF-8 text; ``@LONE`` in the raw
bodies below stands for it."""


@dataclass
class Client:
    """A blocking face of an httpx client on the app's ASGI interface, in-process."""

    portal: BlockingPortal
    client: httpx.AsyncClient

    def request(self, method: str, url: str, **options: Any) -> httpx.Response:
        return self.portal.call(partial(self.client.request, method, url, **options))

    def get(self, url: str, **options: Any) -> httpx.Response:
        return self.request("GET", url, **options)

    def post(self, url: str, **options: Any) -> httpx.Response:
        return self.request("POST", url, **options)

    def put(self, url: str, **options: Any) -> httpx.Response:
        return self.request("PUT", url, **options)

    def patch(self, url: str, **options: Any) -> httpx.Response:
        return self.request("PATCH", url, **options)

    def delete(self, url: str, **options: Any) -> httpx.Response:
        return self.request("DELETE", url, **options)


@dataclass
class App:
    client: Client
    store: Any
    tokens: dict[str, str]
    application: Any

    def as_(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def send(self, method: str, path: str, raw: str, who: str = "alice") -> Any:
        """``raw`` as the JSON body, ``@LONE`` replaced by a lone surrogate."""
        return self.client.request(
            method,
            path,
            content=raw.replace("@LONE", LONE).encode(),
            headers={**self.as_(who), "Content-Type": "application/json"},
        )


@pytest.fixture
def app(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[App]:
    """The app on a SQLite store, or on the backend a test names (``indirect``)."""
    with database_url(getattr(request, "param", "sqlite"), tmp_path) as url:
        yield from serve(url, tmp_path, monkeypatch)


def serve(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    from nbplane.server.app import ServerConfig, create_app
    from nbplane.settings import get_settings

    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "notebooks").mkdir()
    store_url, store, made = in_process_store(
        monkeypatch, url, home, TEAM, NBPLANE_SESSION_MAX_PER_USER="2"
    )
    tokens = {"alice": made["member"], "admin": made["admin"]}
    application = create_app(
        ServerConfig(
            notebooks_dir=tmp_path / "notebooks",
            store_url=store_url,
            cache_dir=home / "cache",
            run_worker=False,
            run_control=False,
            max_body_bytes=4096,
            max_upload_bytes=65536,
        )
    )
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(application.router.lifespan_context(application)),
    ):
        transport = httpx.ASGITransport(app=application)
        client = Client(portal, httpx.AsyncClient(transport=transport, base_url="http://test"))
        found = App(client, store, tokens, application)
        yield found
        for session in client.get(
            "/api/v1/sessions", params={"all": "true"}, headers=found.as_("admin")
        ).json():
            client.delete(f"/api/v1/sessions/{session['id']}", headers=found.as_("admin"))
    store.close()
    get_settings.cache_clear()


def deployed(app: App) -> None:
    """Alice's team has a job with a version, deployed on a schedule."""
    assert app.client.post(BASE, json={"name": JOB}, headers=app.as_("alice")).status_code == 201
    upload = app.client.post(
        f"{BASE}/{JOB}/versions",
        content=RUNNABLE,
        headers={**app.as_("alice"), "Content-Type": "application/zip"},
    )
    assert upload.status_code == 201, upload.text
    deploy = app.client.put(
        f"{BASE}/{JOB}/deployment", json={"schedule": "0 6 * * *"}, headers=app.as_("alice")
    )
    assert deploy.status_code == 200, deploy.text


# -- strings that are not UTF-8 text


@pytest.mark.parametrize(
    ("method", "path", "raw", "field"),
    [
        (
            "POST",
            "/api/v1/notebooks/double/executions",
            '{"parameters": {"x": @LONE}}',
            "body.parameters.x",
        ),
        (
            "POST",
            "/api/NotebookExecutions",
            '{"notebook": "double", "parameters": {"a": [1, @LONE]}}',
            "body.parameters.a.1",
        ),
        ("POST", BASE, '{"name": "other", "description": @LONE}', "body.description"),
        (
            "PATCH",
            f"{BASE}/{JOB}/properties",
            '{"values": {"k": {"deep": @LONE}}}',
            "body.values.k.deep",
        ),
        ("PATCH", f"{BASE}/{JOB}/secrets", '{"values": {@LONE: "v"}}', "body.values.\\ud800"),
        ("POST", "/api/v1/sessions", '{"environment": {"A": @LONE}}', "body.environment.A"),
    ],
)
def test_a_lone_surrogate_anywhere_in_json_is_a_422_naming_the_field(
    app: App, method: str, path: str, raw: str, field: str
) -> None:
    deployed(app)
    answer = app.send(method, path, raw)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field, answer.text
    assert answer.json()["errors"][0]["pointer"] == "/" + field.replace(".", "/")


def test_refused_strings_are_not_stored_and_listings_keep_working(app: App) -> None:
    deployed(app)
    assert (
        app.send("PATCH", f"{BASE}/{JOB}/properties", '{"values": {"k": @LONE}}').status_code == 422
    )
    emoji = app.send("PATCH", f"{BASE}/{JOB}/properties", '{"values": {"k": "\\ud83d\\ude00"}}')
    assert emoji.status_code == 200 and emoji.json() == {"k": "😀"}, "a surrogate pair is text"
    assert app.client.get(f"{BASE}/{JOB}/properties", headers=app.as_("alice")).json() == {
        "k": "😀"
    }
    assert (
        app.send(
            "POST", "/api/v1/notebooks/double/executions", '{"parameters": {"x": @LONE}}'
        ).status_code
        == 422
    )
    assert app.client.get("/api/v1/executions", headers=app.as_("alice")).status_code == 200
    assert app.client.get(BASE, headers=app.as_("alice")).status_code == 200


@pytest.mark.parametrize("app", BACKENDS, indirect=True)
def test_nul_in_bodies_paths_and_queries_is_a_422_on_every_store(app: App) -> None:
    """PostgreSQL's text cannot hold NUL: it used to be a 500 there."""
    deployed(app)
    for raw, field in [
        ('{"name": "other", "description": "a\\u0000b"}', "body.description"),
        ('{"name": "a\\u0000b"}', "body.name"),
    ]:
        answer = app.send("POST", BASE, raw)
        assert answer.status_code == 422 and answer.json()["field"] == field, answer.text
    patched = app.send("PATCH", f"{BASE}/{JOB}/properties", '{"values": {"k\\u0000": 1}}')
    assert patched.status_code == 422 and patched.json()["field"] == "body.values.k\\u0000"
    for path, field in [
        (f"{BASE}/a%00b", "path"),
        ("/api/v1/sessions/a%00b", "path"),
        ("/api/v1/executions?notebook=a%00b", "query.notebook"),
    ]:
        answer = app.client.get(path, headers=app.as_("alice"))
        assert answer.status_code == 422 and answer.json()["field"] == field, answer.text
    deep = app.send("POST", BASE, "[" * 1900 + '"\\u0000"' + "]" * 1900)
    assert deep.status_code == 400, "too deep to read: malformed, not a 500"
    assert app.client.get(BASE, headers=app.as_("alice")).status_code == 200


@pytest.mark.parametrize("app", BACKENDS, indirect=True)
def test_values_longer_than_their_column_are_a_422_on_every_store(app: App) -> None:
    """PostgreSQL enforces column lengths (SQLite does not): these used to be a 500 there."""
    deployed(app)
    schedule = ",".join(["0"] * 150) + " * * * *"  # valid cron, 300 characters
    patched = app.client.patch(
        f"{BASE}/{JOB}/deployment", json={"schedule": schedule}, headers=app.as_("alice")
    )
    assert patched.status_code == 422 and patched.json()["field"] == "body.schedule"
    for field in ("image", "directory", "repository"):
        answer = app.client.post(
            "/api/v1/sessions", json={field: "x" * 1025}, headers=app.as_("alice")
        )
        assert answer.status_code == 422 and answer.json()["field"] == f"body.{field}"
    created = app.client.post(
        "/api/v1/connections",
        json={"name": "warehouse", "kind": "generic", "values": {}},
        headers=app.as_("admin"),
    )
    assert created.status_code == 201, created.text
    granted = app.client.post(
        "/api/v1/connections/warehouse/grants", json={"user": "u" * 256}, headers=app.as_("admin")
    )
    assert granted.status_code == 422 and granted.json()["field"] == "body.user"


def test_offsets_past_64_bits_are_a_422_not_an_overflow(app: App) -> None:
    deployed(app)
    execution = app.client.post(f"{BASE}/{JOB}/executions", json={}, headers=app.as_("alice"))
    huge = {"offset": str(2**70)}
    for path in (
        "/api/v1/executions",
        "/api/v1/job-executions",
        f"{BASE}/{JOB}/executions",
        f"{BASE}/{JOB}/executions/{execution.json()['id']}/logs",
    ):
        answer = app.client.get(path, params=huge, headers=app.as_("alice"))
        assert answer.status_code == 422 and answer.json()["field"] == "query.offset", answer.text


# -- PATCH bodies, schedules, archives, sizes


@pytest.mark.parametrize(
    "field", ["timezone", "enabled", "arguments", "resources", "timeout", "version"]
)
def test_null_in_a_deployment_patch_is_a_422_naming_the_field(app: App, field: str) -> None:
    deployed(app)
    answer = app.client.patch(
        f"{BASE}/{JOB}/deployment", json={field: None}, headers=app.as_("alice")
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == f"body.{field}"


def test_null_clears_a_deployments_schedule(app: App) -> None:
    deployed(app)
    answer = app.client.patch(
        f"{BASE}/{JOB}/deployment", json={"schedule": None}, headers=app.as_("alice")
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["schedule"] is None and answer.json()["timezone"] == "UTC"


@pytest.mark.parametrize(
    ("schedule", "status"),
    [
        ("* * * * * * *", 422),  # a seventh (year) field: croniter ran it every second
        ("0 0 6 * * * 2030", 422),
        ("* * * * * *", 422),  # six fields, every second
        ("0-59 * * * * *", 422),
        ("*/10 * * * * *", 200),
        ("0 6 * * *", 200),
        ("@hourly", 200),
    ],
)
def test_schedules_that_would_run_every_second_are_refused(
    app: App, schedule: str, status: int
) -> None:
    deployed(app)
    for method in ("PUT", "PATCH"):
        answer = app.client.request(
            method,
            f"{BASE}/{JOB}/deployment",
            json={"schedule": schedule},
            headers=app.as_("alice"),
        )
        assert answer.status_code == status, answer.text
        if status == 422:
            assert answer.json()["field"] == "schedule"


def test_a_stored_schedule_that_is_refused_now_is_switched_off_not_a_failing_loop(
    app: App,
) -> None:
    """Deployed before every-second schedules were refused: the scheduler turns it off."""
    from sqlalchemy import update

    from nbplane.deployments.reconciler import DeploymentReconciler
    from nbplane.store.tables import deployments

    deployed(app)
    with app.store.engine.begin() as connection:
        connection.execute(
            update(deployments).values(
                schedule="* * * * * *", next_run_at=datetime.now(UTC) - timedelta(seconds=1)
            )
        )

    async def one_scheduler_step() -> None:
        await DeploymentReconciler(app.application.state.deployments).schedule_due()

    app.client.portal.call(one_scheduler_step)
    job = app.client.get(f"{BASE}/{JOB}", headers=app.as_("alice")).json()
    assert job["deployment"]["next_run_at"] is None and job["last_executions"] == []


@pytest.mark.parametrize(
    ("archive", "says"),
    [
        (broken_crc(RUNNABLE), "Bad CRC-32"),
        (job_archive({"a": "x", "a/b.py": "def run(job_input): pass"}), "'a/b.py'"),
        (job_archive({"readme.txt": "no steps"}), "no steps"),
        (job_archive({"10_a.ipynb": "{not json"}), "10_a.ipynb: not valid JSON"),
    ],
)
def test_damaged_or_unrunnable_archives_are_a_422_without_server_paths(
    app: App, archive: bytes, says: str
) -> None:
    deployed(app)
    answer = app.client.post(
        f"{BASE}/{JOB}/versions",
        content=archive,
        headers={**app.as_("alice"), "Content-Type": "application/zip"},
    )
    assert answer.status_code == 422, answer.text
    assert says in answer.json()["message"]
    for server_path in ("/tmp", "nbplane-upload", str(Path.home())):
        assert server_path not in answer.text


def test_bodies_over_the_limit_are_413_declared_or_chunked(app: App) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"values": {"k": "'
        for _ in range(10):
            yield b"a" * 1000
        yield b'"}}'

    async def archive_chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"PK" * 500

    deployed(app)
    for upload in (archive_chunks(), b"PK" * 50_000):
        answer = app.client.post(
            f"{BASE}/{JOB}/versions",
            content=upload,
            headers={**app.as_("alice"), "Content-Type": "application/zip"},
        )
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"] == "PayloadTooLarge" and "65536" in answer.json()["message"]
    for body in (chunks(), b'{"values": {"k": "' + b"a" * 10_000 + b'"}}'):
        answer = app.client.patch(
            f"{BASE}/{JOB}/properties",
            content=body,
            headers={**app.as_("alice"), "Content-Type": "application/json"},
        )
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"] == "PayloadTooLarge" and answer.json()["field"] == "body"


# -- sessions per user


def test_one_session_over_the_limit_is_a_429_naming_the_sessions_to_stop(app: App) -> None:
    started = [
        app.client.post("/api/v1/sessions", json={}, headers=app.as_("alice")) for _ in range(2)
    ]
    assert [answer.status_code for answer in started] == [201, 201]
    ids = [answer.json()["id"] for answer in started]
    refused = app.client.post("/api/v1/sessions", json={}, headers=app.as_("alice"))
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert body["sessions"] == ids and body["limit"] == 2
    assert all(session_id in body["message"] for session_id in ids)
    assert "nbplane session stop" in body["message"]
    listed = app.client.get("/api/v1/sessions", headers=app.as_("alice")).json()
    assert [session["id"] for session in listed] == ids, "the refused one left nothing behind"

    app.store.auth.set_max_sessions("alice", 3)  # `nbplane user limit alice --max-sessions 3`
    assert app.client.post("/api/v1/sessions", json={}, headers=app.as_("alice")).status_code == 201
    app.store.auth.set_max_sessions("alice", None)
    assert (
        app.client.delete(f"/api/v1/sessions/{ids[0]}", headers=app.as_("alice")).status_code == 204
    )
    assert (
        app.client.post("/api/v1/sessions", json={}, headers=app.as_("alice")).status_code == 429
    ), "3 running, limit 2"


def test_resuming_over_the_limit_is_a_429(app: App) -> None:
    first = app.client.post("/api/v1/sessions", json={}, headers=app.as_("alice")).json()
    assert (
        app.client.post(
            f"/api/v1/sessions/{first['id']}/hibernate", headers=app.as_("alice")
        ).status_code
        == 200
    )
    for _ in range(2):
        assert (
            app.client.post("/api/v1/sessions", json={}, headers=app.as_("alice")).status_code
            == 201
        )
    resumed = app.client.post(f"/api/v1/sessions/{first['id']}/resume", headers=app.as_("alice"))
    assert resumed.status_code == 429, resumed.text


# -- tokens that end


def test_an_expired_token_is_a_401_that_says_so(app: App) -> None:
    _, token = app.store.auth.create_token("old", "alice", datetime.now(UTC) - timedelta(seconds=1))
    for path in ("/api/v1/me", BASE, "/api/v1/sessions", "/api/v1/executions"):
        answer = app.client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401, answer.text
        assert "expired" in answer.json()["message"]
    signed_in = app.client.post(
        "/api/v1/auth/sign-in", json={"token": token}, headers={"X-Nbplane-Csrf": "1"}
    )
    assert signed_in.status_code == 401 and "expired" in signed_in.json()["message"]


def test_a_cached_token_is_not_trusted_past_its_expiry(app: App) -> None:
    expires_at = datetime.now(UTC) + timedelta(seconds=1)
    _, token = app.store.auth.create_token("short", "alice", expires_at)
    me = app.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["token_expires_at"] is not None
    while datetime.now(UTC) <= expires_at:
        time.sleep(0.1)
    later = app.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert later.status_code == 401 and "expired" in later.json()["message"]


def test_a_sessions_token_is_revoked_when_the_session_ends(app: App) -> None:
    session = app.client.post("/api/v1/sessions", json={}, headers=app.as_("alice")).json()
    name = f"session-{session['id']}"
    tokens = {token.name: token for token in app.store.auth.list_tokens()}
    assert tokens[name].revoked_at is None
    assert (
        app.client.delete(f"/api/v1/sessions/{session['id']}", headers=app.as_("alice")).status_code
        == 204
    )
    tokens = {token.name: token for token in app.store.auth.list_tokens()}
    assert tokens[name].revoked_at is not None


# -- the OpenAPI document


def test_openapi_lists_error_statuses_with_the_one_error_model(app: App) -> None:
    document = app.client.get("/openapi.json").json()
    error = {"$ref": "#/components/schemas/DescribeError"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            for status, answer in answers.items():
                if status[0] in "45" and (path, status) != ("/health/ready", "503"):
                    assert answer["content"]["application/json"]["schema"] == error
            if not path.startswith(("/health", "/metrics", "/api/v1/auth")):
                assert "401" in answers, (method, path)
            if "{" in path:
                assert "404" in answers, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "422"} <= set(answers), (method, path)
    sessions = document["paths"]["/api/v1/sessions"]["post"]["responses"]
    assert "429" in sessions and "409" in sessions
    upload = document["paths"]["/api/v1/teams/{team}/jobs/{job}/versions"]["post"]
    assert "application/zip" in upload["requestBody"]["content"]
    patch = document["components"]["schemas"]["UpdateDeployment"]["properties"]
    assert patch["timezone"] == {"title": "Timezone", "type": "string"}
    assert {"type": "null"} in patch["schedule"]["anyOf"]


# -- the CLI: token expiry, users' session limits


def test_token_create_with_an_expiry_and_list_shows_it(env: Env) -> None:
    created = env.run("token", "create", "laptop", "--expires-in", "90m")
    assert "expires" in created.stderr and created.stdout.strip().startswith("nbp_")
    env.run("token", "create", "forever")
    listed = {t["name"]: t for t in json.loads(env.run("token", "list", "--output", "json").stdout)}
    expires_at = datetime.fromisoformat(listed["laptop"]["expires_at"])
    assert timedelta(minutes=89) < expires_at - datetime.now(UTC) <= timedelta(minutes=90)
    assert listed["forever"]["expires_at"] is None
    table = env.run("token", "list").stdout
    assert "expires" in table and f"{expires_at:%Y-%m-%d %H:%M}" in table
    wrong = env.run("token", "create", "other", "--expires-in", "5x", check=2)
    assert "not a duration like 30d, 12h or 90m" in wrong.stderr


def test_an_admin_sets_a_users_session_limit(env: Env) -> None:
    env.run("user", "create", "alice", "--team", "analytics", "--max-sessions", "5")
    env.run("user", "limit", "alice", "--max-sessions", "1")

    def limit() -> Any:
        users = json.loads(env.run("user", "list", "--output", "json").stdout)
        return next(u for u in users if u["name"] == "alice")["max_sessions"]

    assert limit() == 1
    env.run("user", "limit", "alice", "--default")
    assert limit() is None
    assert (
        "either --max-sessions N or --default" in env.run("user", "limit", "alice", check=2).stderr
    )
    assert "no user named 'bob'" in env.run("user", "limit", "bob", "--default", check=2).stderr
