"""The access matrix: every route of the app (every method, from the app's own route table) as
every role, against alice's objects (see conftest.py). A route missing from ``RULES`` fails
here by itself, so a new route cannot ship without saying who may call it.

What each access level expects of each role ("ok": the caller reached the object, 2xx, 3xx or
409, it exists but is in no state for that; "any": never a 5xx; a forged token, one nbplane
never made, is answered as anonymous):

    access     anonymous  bob (team B)  carol (team A)  alice (owner)  ben (admin, team B)
    public     any        any           any             any            any
    signed-in  401        ok            ok              ok             ok
    listing    401        ok, without alice's objects unless they may see them
    team       401        404           ok              ok             ok
    owner      401        404           404             ok             ok
    opener     401        404           404             ok             403
    admin      401        404           404             404            ok
    execution  401        401           401             401            401

An ``execution`` route (``/api/v1/execution``) answers only the credential of a running job
execution, and that credential is refused everywhere else (see the test at the end).

An ``opener`` route (``/sessions/{id}/...``, HTTP and WebSocket: the session's own server through
nbplane) lets only the session's owner in: an admin sees that the session exists (403, not 404)
but does not open it, since its pages would run on nbplane's origin with the admin's sign-in.
``WEBSOCKET`` rows open a WebSocket (its handshake's status; 101 when accepted).

A 404 (never 403) tells another team nothing about what exists. Admin-only routes answer 404 to
everyone else too ("managed by admins"). A request that would change or remove its object gets
a fresh one per role (removed afterwards); after a refusal, the object is checked untouched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIWebSocketRoute, iter_route_contexts
from starlette.routing import Mount

from nbplane.deployments.context import new_execution_token
from nbplane.deployments.lifecycle import JobExecutionLifecycle
from nbplane.jobs.models import CreateRun
from nbplane.server.app import ServerConfig, create_app
from nbplane.server.routes import proxy
from nbplane.store.auth import token_hash
from tests.security.conftest import ANONYMOUS, FORGED, TEAM_A, Objects, World, expect

ROLES = [ANONYMOUS, FORGED, "bob", "carol", "alice", "ben"]
ADMIN = "ben"


class Access(StrEnum):
    PUBLIC = "public"
    SIGNED_IN = "signed-in"
    LISTING = "listing"
    TEAM = "team"
    OWNER = "owner"
    OPENER = "opener"
    ADMIN = "admin"
    EXECUTION = "execution"


SEES = {
    Access.TEAM: {"carol", "alice"},
    Access.OWNER: {"alice"},
    Access.OPENER: {"alice"},
    Access.ADMIN: set[str](),
}
"""Who, besides admins, reaches an object of each access level."""

Body = Callable[[Objects, str], dict[str, Any]]


@dataclass(frozen=True)
class Rule:
    access: Access
    why: str = ""
    """Public and signed-in routes: why that is enough."""
    body: Body | None = None
    """The JSON body, from alice's objects and the caller's role."""
    archive: bool = False
    """The body is the job's zip."""
    headers: dict[str, str] | None = None
    query: Callable[[Objects], dict[str, str]] | None = None
    fresh: str | None = None
    """The request changes or removes this kind of object: each role gets a new one."""
    lists: tuple[str, Access] | None = None
    """A listing: which of alice's objects (an ``Objects`` field) it shows, and to whom."""


def public(why: str, body: Body | None = None, **options: Any) -> Rule:
    return Rule(Access.PUBLIC, why, body, **options)


def signed_in(why: str, body: Body | None = None) -> Rule:
    return Rule(Access.SIGNED_IN, why, body)


def listing(what: str, seen: Access) -> Rule:
    return Rule(Access.LISTING, lists=(what, seen))


def team(body: Body | None = None, **options: Any) -> Rule:
    return Rule(Access.TEAM, body=body, **options)


def owner(**options: Any) -> Rule:
    return Rule(Access.OWNER, **options)


def opener() -> Rule:
    return Rule(Access.OPENER)


def admin(body: Body | None = None, **options: Any) -> Rule:
    return Rule(Access.ADMIN, body=body, **options)


def execution(body: Body | None = None) -> Rule:
    return Rule(Access.EXECUTION, body=body)


DOCS = public("API documentation page: static, it loads /openapi.json")
SPEC = public("the API's description, no records (it names the notebook APIs and contracts)")
CATALOG = "the notebook APIs are the server's catalog, shared by every signed-in user"
RUN = "runs a notebook API of the shared catalog as an execution of the caller's own"
JOB = "/api/v1/teams/{team}/jobs/{job}"
EXECUTION = "/api/v1/executions/{execution_id}"
SESSION = "/api/v1/sessions/{session_id}"
OPENED = "/sessions/{session_id}/{path}"
CONNECTION = "/api/v1/connections/{name}"
USER = "/api/v1/users/{user}"
GRANT_A: Body = lambda objects, role: {"team": TEAM_A}  # noqa: E731
OWN = "/api/v1/execution"
STEP: Body = lambda objects, role: {  # noqa: E731
    "position": 0,
    "name": "10_main.ipynb#1",
    "kind": "python",
    "file": "10_main.ipynb",
    "status": "failed",
    "code_hash": "0",
    "chain_hash": "0",
}
RUN_RECORD: Body = lambda objects, role: {  # noqa: E731
    "job_dir": "/tmp/job",
    "job_name": "job",
    "arguments": {},
    "db_url": "sqlite://",
    "resumed": False,
    "plan": [],
}

RULES: dict[str, Rule] = {
    "GET /openapi.json": SPEC,
    "HEAD /openapi.json": SPEC,
    "GET /docs": DOCS,
    "HEAD /docs": DOCS,
    "GET /docs/oauth2-redirect": DOCS,
    "HEAD /docs/oauth2-redirect": DOCS,
    "GET /docs/assets/{path}": public("Swagger UI's own files, served by the package (no CDN)"),
    "GET /health": public("liveness probe of load balancers and Kubernetes; says only 'ok'"),
    "GET /health/live": public("the liveness probe; says only 'ok'"),
    "GET /health/ready": public(
        "the readiness probe: each check's name and whether it passed, no error text"
    ),
    "GET /metrics": public(
        "Prometheus' scrape: aggregate counts by status, method and route template, no names"
    ),
    "GET /": public("the web page: static HTML that asks for a token to sign in"),
    "GET /web/{path}": public("the web console's scripts and style sheet"),
    "GET /api/v1/auth": public(
        "how people log in here (the authenticator's name), before any token"
    ),
    "POST /api/v1/auth/login": public(
        "a token for whom the request itself identifies to the authenticator: the login itself",
        lambda objects, role: {},
    ),
    "POST /api/v1/auth/logout": signed_in("ends the caller's own login, no one else's"),
    "GET /nbplane/logout": public("signs the caller's own browser out, acts on no one else"),
    "GET /nbplane/login": public("signs in a browser the authenticator recognises, or sends it on"),
    "GET /api/v1/auth/oauth": public("the OAuth provider to log in with, asked before any token"),
    "POST /api/v1/auth/oauth/token": public(
        "trades the provider's access token for an nbplane token: the login itself",
        lambda objects, role: {"access_token": "not-a-provider-token"},
    ),
    "POST /api/v1/auth/sign-in": public(
        "checks the token in its body, then keeps it in the browser's cookie",
        lambda objects, role: {"token": "nbp_not_a_token"},
        headers={"X-Nbplane-Csrf": "1"},
    ),
    "POST /api/v1/auth/sign-out": public("clears the caller's own cookie, acts on no one else"),
    "GET /nbplane/oauth/login": public("sends the browser to the OAuth provider"),
    "GET /nbplane/oauth/callback": public(
        "where the OAuth provider sends the browser back; checks this browser's login cookie"
    ),
    "GET /api/v1/me": signed_in("who the caller is"),
    "GET /api/v1/notebooks": signed_in(CATALOG),
    "GET /api/v1/notebooks/{name}": signed_in(CATALOG),
    "POST /api/v1/notebooks/{name}/executions": signed_in(
        RUN, lambda objects, role: {"parameters": {"text": f"from {role}"}}
    ),
    "POST /api/NotebookExecutions": signed_in(
        RUN, lambda objects, role: {"notebook": objects.notebook, "parameters": {"text": role}}
    ),
    "GET /api/v1/sessions/resource-classes": signed_in("the resource classes the caller may use"),
    "POST /api/v1/sessions": signed_in(
        "starts a session of the caller's own", lambda objects, role: {"environment": {}}
    ),
    "GET /api/v1/executions": listing("execution", Access.OWNER),
    "GET /api/v1/job-executions": listing("job_execution", Access.TEAM),
    "GET /api/v1/sessions": listing("session", Access.OWNER),
    "GET /api/v1/teams/{team}/jobs": team(),
    "POST /api/v1/teams/{team}/jobs": team(lambda objects, role: {"name": f"made-by-{role}"}),
    f"GET {JOB}": team(),
    f"DELETE {JOB}": team(fresh="job"),
    f"POST {JOB}/versions": team(archive=True),
    f"GET {JOB}/versions": team(),
    f"GET {JOB}/versions/{{version}}/archive": team(),
    f"PUT {JOB}/deployment": team(
        lambda objects, role: {"arguments": {"day": "2024-01-02"}, "retries": 1, "retry_delay": 5}
    ),
    f"PATCH {JOB}/deployment": team(
        lambda objects, role: {"reason": f"changed by {role}", "retry_on": "platform"}
    ),
    f"DELETE {JOB}/deployment": team(fresh="job"),
    f"POST {JOB}/executions": team(lambda objects, role: {"arguments": {"day": "2024-01-03"}}),
    f"GET {JOB}/executions": team(),
    f"GET {JOB}/executions/{{execution_id}}": team(),
    f"POST {JOB}/executions/{{execution_id}}/cancel": team(),
    f"GET {JOB}/executions/{{execution_id}}/logs": team(),
    f"GET {JOB}/executions/{{execution_id}}/html": team(),
    f"GET {JOB}/properties": team(),
    f"PATCH {JOB}/properties": team(lambda objects, role: {"values": {"changed_by": role}}),
    f"GET {JOB}/secrets": team(),
    f"PATCH {JOB}/secrets": team(lambda objects, role: {"values": {"probe": "not a secret"}}),
    f"GET {EXECUTION}": owner(),
    f"POST {EXECUTION}/cancel": owner(),
    f"GET {EXECUTION}/output": owner(),
    f"GET {EXECUTION}/exception": owner(),
    f"GET {EXECUTION}/notebook": owner(),
    f"GET {EXECUTION}/html": owner(),
    f"GET {EXECUTION}/logs": owner(),
    "GET /api/NotebookExecutions": owner(query=lambda objects: {"executionId": objects.execution}),
    f"GET {SESSION}": owner(),
    f"GET {SESSION}/events": owner(),
    f"GET {SESSION}/logs": owner(),
    f"POST {SESSION}/hibernate": owner(fresh="session"),
    f"POST {SESSION}/resume": owner(fresh="session"),
    f"DELETE {SESSION}": owner(fresh="session"),
    **{f"{method} {OPENED}": opener() for method in proxy.METHODS},
    f"WEBSOCKET {OPENED}": opener(),
    "POST /api/v1/connections": admin(
        lambda objects, role: {
            "name": f"made_by_{role}",
            "kind": "database",
            "values": {"url": "sqlite://"},
        }
    ),
    "GET /api/v1/connections": admin(),
    f"GET {CONNECTION}": admin(),
    f"DELETE {CONNECTION}": admin(fresh="connection"),
    f"POST {CONNECTION}/grants": admin(GRANT_A),
    f"DELETE {CONNECTION}/grants": admin(GRANT_A, fresh="connection"),
    "GET /api/v1/users": admin(),
    "POST /api/v1/users": admin(lambda objects, role: {"name": f"made-by-{role}"}),
    f"GET {USER}": admin(),
    f"PATCH {USER}": admin(lambda objects, role: {"max_sessions": 3}, fresh="user"),
    f"DELETE {USER}": admin(fresh="user"),
    f"PUT {USER}/teams/{{team}}": admin(fresh="user"),
    f"DELETE {USER}/teams/{{team}}": admin(fresh="user"),
    "GET /api/v1/teams": listing("team", Access.TEAM),
    "GET /api/v1/tokens": listing("token", Access.OWNER),
    "POST /api/v1/tokens": signed_in(
        "makes a token of the caller's own (naming another user: admins only)",
        lambda objects, role: {"name": f"made-by-{role}"},
    ),
    "DELETE /api/v1/tokens/{name}": owner(fresh="token"),
    f"GET {OWN}": execution(),
    f"GET {OWN}/archive": execution(),
    f"GET {OWN}/properties": execution(),
    f"PUT {OWN}/properties": execution(lambda objects, role: {"changed_by": role}),
    f"GET {OWN}/secrets": execution(),
    f"PUT {OWN}/secrets": execution(lambda objects, role: {"probe": "not a secret"}),
    f"GET {OWN}/connections": execution(),
    f"POST {OWN}/log": execution(lambda objects, role: {"text": f"from {role}"}),
    f"POST {OWN}/runs": execution(RUN_RECORD),
    f"POST {OWN}/runs/{{run_id}}/steps": execution(STEP),
    f"POST {OWN}/runs/{{run_id}}/finish": execution(lambda objects, role: {"status": "failed"}),
    f"POST {OWN}/finish": execution(lambda objects, role: {"status": "failed"}),
}


def route_table(app: FastAPI) -> list[str]:
    """``METHOD PATH`` of every route the app answers (a mount: GET of its files)."""
    found: list[str] = []
    for route in iter_route_contexts(app.routes):
        methods = {"GET"} if isinstance(route.original_route, Mount) else route.methods
        if isinstance(route.original_route, APIWebSocketRoute):
            methods = {"WEBSOCKET"}
        found.extend(f"{method} {route.path_format}" for method in sorted(methods or {"?"}))
    return found


ROUTES = route_table(create_app(ServerConfig(Path(), "sqlite://", Path())))


def fill(path: str, objects: Objects) -> str:
    """The path with alice's objects in its parameters."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        values = {
            "team": objects.team,
            "job": objects.job,
            "version": objects.version,
            "execution_id": objects.job_execution if "/jobs/" in path else objects.execution,
            "session_id": objects.session,
            "name": (
                objects.connection
                if "/connections/" in path
                else objects.token
                if "/tokens/" in path
                else objects.notebook
            ),
            "user": objects.user,
            "path": "swagger-ui.css" if path.startswith("/docs/") else "style.css",
            "run_id": "1",
        }
        if name not in values:
            pytest.fail(f"the matrix cannot fill {{{name}}} of {path}: add it to fill()")
        return values[name]

    return re.sub(r"\{(\w+)\}", value, path)


def send(
    world: World,
    role: str,
    route: str,
    rule: Rule,
    objects: Objects,
    client: httpx.Client | None = None,
) -> httpx.Response:
    """The route's request as ``role`` (with that role's client unless one is given)."""
    method, path = route.split(" ", 1)
    if method == "WEBSOCKET":
        return handshake(world, client or world.clients[role], fill(path, objects))
    options: dict[str, Any] = {
        "params": rule.query(objects) if rule.query else None,
        "headers": dict(rule.headers or {}),
    }
    if rule.body is not None:
        options["json"] = rule.body(objects, role)
    if rule.archive:
        options["content"] = world.archive
        options["headers"]["content-type"] = "application/zip"
    return (client or world.clients[role]).request(method, fill(path, objects), **options)


def handshake(world: World, client: httpx.Client, path: str) -> httpx.Response:
    """Open a WebSocket at ``path`` with ``client``'s credentials, in-process: the handshake's
    answer (its refusal's status and body, or 101 when accepted), then leave."""
    headers = [(b"host", b"testserver")]
    if "authorization" in client.headers:
        headers.append((b"authorization", client.headers["authorization"].encode()))
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}},
    }
    incoming: list[MutableMapping[str, Any]] = [
        {"type": "websocket.connect"},
        {"type": "websocket.disconnect", "code": 1000},
    ]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async def knock() -> None:
        with anyio.fail_after(30):
            await world.app(scope, receive, send)

    world.portal.call(knock)
    first = sent[0]
    if first["type"] == "websocket.accept":
        return httpx.Response(101)
    if first["type"] == "websocket.close":
        return httpx.Response(403, text=first.get("reason", ""))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "websocket.http.response.body")
    return httpx.Response(first["status"], content=body)


def expected(rule: Rule, role: str) -> str:
    if rule.access == Access.PUBLIC:
        return "any"
    if role in (ANONYMOUS, FORGED) or rule.access == Access.EXECUTION:
        return "401"
    if rule.access == Access.OPENER and role == ADMIN:
        return "403"
    if rule.access in (Access.SIGNED_IN, Access.LISTING) or role == ADMIN:
        return "ok"
    return "ok" if role in SEES[rule.access] else "404"


def reached(status: int) -> bool:
    return 200 <= status < 400 or status in (101, 409)


def assert_untouched(world: World, kind: str, objects: Objects) -> None:
    """A refused request left alice's object as it was."""
    if kind == "job":
        job = expect(world.clients["alice"].get(fill(JOB, objects)), 200)
        assert job["deployment"] is not None, "the refused request undeployed the job"
    elif kind == "session":
        session = expect(world.clients["alice"].get(fill(SESSION, objects)), 200)
        assert session["status"] == "failed", f"the refused request made it {session['status']}"
    elif kind == "user":
        user = expect(world.clients["ben"].get(fill(USER, objects)), 200)
        assert (user["teams"], user["max_sessions"]) == ([TEAM_A], None), f"changed: {user}"
    elif kind == "token":
        tokens = expect(world.clients["alice"].get("/api/v1/tokens"), 200)
        [token] = [token for token in tokens if token["name"] == objects.token]
        assert token["revoked_at"] is None, "the refused request revoked it"
    else:
        connection = expect(world.clients["ann"].get(fill(CONNECTION, objects)), 200)
        assert {"kind": "team", "name": TEAM_A} in connection["grants"], "its grant is gone"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", ROUTES)
def test_access(world: World, route: str, role: str) -> None:
    rule = RULES.get(route)
    if rule is None:
        pytest.fail(
            f"{route} is not in the access matrix: add it to RULES, saying who may call "
            "it (and check that everyone else gets 404)"
        )
    with world.objects_for(rule.fresh) as objects:
        answer = send(world, role, route, rule, objects)
        check(world, rule, role, route, objects, answer)


def check(
    world: World, rule: Rule, role: str, route: str, objects: Objects, answer: httpx.Response
) -> None:
    seen = f"{role}: {route} -> {answer.status_code} {answer.text[:300]}"
    assert answer.status_code < 500, seen
    wanted = expected(rule, role)
    if wanted == "401":
        assert answer.status_code == 401, seen
    elif wanted == "403":
        assert answer.status_code == 403, seen
    elif wanted == "404":
        assert answer.status_code == 404, seen
    elif wanted == "ok":
        assert reached(answer.status_code), seen
    if rule.fresh and wanted in ("401", "404"):
        assert_untouched(world, rule.fresh, objects)
    if rule.lists and wanted == "ok":
        field, seen_by = rule.lists
        target = getattr(objects, field)
        if role in SEES[seen_by]:
            assert target in answer.text, f"{role}'s listing lacks their {field} {target}: {seen}"
        elif role != ADMIN:
            assert target not in answer.text, f"{role}'s listing shows alice's {field}: {seen}"


def test_every_route_is_in_the_matrix_and_fillable(world: World) -> None:
    """The rules match the running app's routes one to one, and each rule supplies what its
    route requires (path and query parameters, a body), so no row passes by a 422."""
    assert route_table(world.app) == ROUTES
    missing = [route for route in ROUTES if route not in RULES]
    stale = [route for route in RULES if route not in ROUTES]
    assert not missing and not stale, f"not in RULES: {missing}; no longer routes: {stale}"
    spec = world.app.openapi()["paths"]
    for route, rule in RULES.items():
        method, path = route.split(" ", 1)
        operation = spec.get(path, {}).get(method.lower())
        if operation is None:
            continue  # outside the OpenAPI document: the page, its files, the docs
        query = set(rule.query(world.shared)) if rule.query else set()
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query" and parameter.get("required"):
                assert parameter["name"] in query, f"{route} needs query {parameter['name']}"
            if parameter["in"] == "path":
                fill(path, world.shared)
        if operation.get("requestBody", {}).get("required"):
            assert rule.body or rule.archive, f"{route} needs a body: give its rule one"


CROSSED = [
    route
    for route in ROUTES
    if route.split(" ", 1)[1].startswith("/api/v1/teams/{team}")
    and set(re.findall(r"\{(\w+)\}", route)) - {"team", "job"}
]
"""Routes naming an object inside a team's job: its version or execution."""


@pytest.mark.parametrize("route", CROSSED)
def test_own_team_path_with_another_teams_id(world: World, route: str) -> None:
    """bob's own team and job in the path around alice's version or execution id: 404, while
    the same route with his own ids reaches his (so the 404 is about the id)."""
    assert world.others is not None
    rule = RULES[route]
    with world.objects_for(rule.fresh) as alices:
        crossed = replace(alices, team=world.others.team, job=world.others.job)
        answer = send(world, "bob", route, rule, crossed)
    assert answer.status_code == 404, f"{route} -> {answer.status_code} {answer.text[:300]}"
    own = send(world, "bob", route, rule, world.others)
    assert reached(own.status_code), f"bob's own: {own.status_code} {own.text[:300]}"


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_another_teams_version_cannot_be_deployed(world: World, method: str) -> None:
    """Naming alice's version in the body of bob's own deployment is a 404 too."""
    assert world.others is not None
    path = fill(f"{JOB}/deployment", world.others)
    answer = world.clients["bob"].request(method, path, json={"version": world.shared.version})
    assert answer.status_code == 404, answer.text
    assert answer.json()["field"] == "version"
    deployed = expect(world.clients["bob"].get(fill(JOB, world.others)), 200)["deployment"]
    assert deployed["version"] == world.others.version


def test_a_teams_connection_reaches_only_its_members_sessions(world: World) -> None:
    """The connection granted to team A is given to alice's session, not to bob's."""
    alices = expect(world.clients["alice"].get(fill(SESSION, world.shared)), 200)
    assert world.shared.connection in alices["connections"]
    bobs = replace(world.shared, session=world.make_session("bob"))
    assert expect(world.clients["bob"].get(fill(SESSION, bobs)), 200)["connections"] == []
    expect(world.clients["bob"].delete(fill(SESSION, bobs)), 204)


def test_an_execution_credential_reaches_only_its_own_execution(world: World) -> None:
    """A running execution of bob's job, with its credential: its own job's state through
    ``/api/v1/execution``; every other route 401; alice's run 404; nothing once it ended."""
    assert world.others is not None
    path = fill(JOB, world.others)
    execution_id = expect(world.clients["bob"].post(f"{path}/executions", json={}), 201)["id"]
    credential = new_execution_token()
    lifecycle = JobExecutionLifecycle(world.store.deployments)
    assert lifecycle.start(execution_id, 1, {"test": True}, token_hash(credential))
    alices_run = world.store.create_run(
        CreateRun(
            job_dir="/tmp/alice",
            job_name=world.shared.job,
            job_team=TEAM_A,
            arguments={},
            db_url="sqlite://",
            resumed=False,
            plan=[],
        ),
        world.shared.job_execution,
    )
    # its own answers hold its job's secret in clear: kept out of the secret scan
    own = world.client("bob's execution", credential, exchanges=[])
    context = expect(own.get(OWN), 200)
    assert (context["team"], context["job"]) == (world.others.team, world.others.job)
    assert expect(own.get(f"{OWN}/secrets"), 200) == {"api_key": world.secrets.job}
    assert expect(own.get(f"{OWN}/connections"), 200) == [], "team B was granted none"
    for route, rule in RULES.items():
        if rule.access in (Access.PUBLIC, Access.EXECUTION):
            continue
        answer = send(world, "bob's execution", route, rule, world.shared, own)
        assert answer.status_code == 401, f"{route} -> {answer.status_code} {answer.text[:200]}"
    for action, body in (("steps", STEP(world.shared, "bob")), ("finish", {"status": "failed"})):
        answer = own.post(f"{OWN}/runs/{alices_run.id}/{action}", json=body)
        assert answer.status_code == 404, answer.text
    # a run record it starts is its deployed job's, whatever directory it names: never one
    # that alice's resume or run numbers would read
    posing = {**RUN_RECORD(world.shared, "bob"), "job_dir": alices_run.job_dir}
    own_run = expect(own.post(f"{OWN}/runs", json=posing), 201)
    assert own_run["job_dir"] == f"deployed:{world.others.team}/{world.others.job}"
    assert (own_run["number"], own_run["job_name"]) == (1, world.others.job)
    assert [run.id for run in world.store.list_runs(alices_run.job_dir)] == [alices_run.id]
    expect(own.post(f"{OWN}/finish", json={"status": "completed"}), 204)
    assert own.get(OWN).status_code == 401, "the credential ended with its execution"
    assert own.get(f"{OWN}/secrets").status_code == 401


def test_a_failed_attempts_credential_ends_with_it(world: World) -> None:
    """bob's job retries: the credential of its failed first attempt is refused from the
    moment the attempt fails, while the retry runs on a credential of its own."""
    assert world.others is not None
    path = fill(JOB, world.others)
    expect(world.clients["bob"].patch(f"{path}/deployment", json={"retries": 1}), 200)
    execution_id = expect(world.clients["bob"].post(f"{path}/executions", json={}), 201)["id"]
    lifecycle = JobExecutionLifecycle(world.store.deployments)
    first, second = new_execution_token(), new_execution_token()
    assert lifecycle.start(execution_id, 1, {"test": True}, token_hash(first))
    failing = world.client("bob's first attempt", first, exchanges=[])
    expect(failing.post(f"{OWN}/finish", json={"status": "failed", "reason": "step 1"}), 204)
    assert failing.get(OWN).status_code == 401, "the failed attempt's credential still works"
    assert lifecycle.start(execution_id, 2, {"test": True}, token_hash(second))
    assert not lifecycle.start(execution_id, 2, {"test": True}, token_hash(first))
    retry = world.client("bob's second attempt", second, exchanges=[])
    assert expect(retry.get(OWN), 200)["id"] == execution_id
    assert failing.get(OWN).status_code == 401
    expect(retry.post(f"{OWN}/finish", json={"status": "completed"}), 204)
    described = expect(world.clients["bob"].get(f"{path}/executions/{execution_id}"), 200)
    assert [(a["number"], a["status"], a["failure"]) for a in described["attempts"]] == [
        (1, "failed", "user"),
        (2, "completed", None),
    ]
    expect(world.clients["bob"].patch(f"{path}/deployment", json={"retries": 0}), 200)


def test_health_and_metrics_name_no_one(world: World) -> None:
    """What anyone may read without a token tells counts and check names only: none of the
    users, teams, jobs, notebooks, sessions or tokens the matrix has just used (the metrics of
    all its requests included), nor the database's address."""
    anonymous = world.clients[ANONYMOUS]
    for role in ("alice", "bob"):  # requests with ids in their paths, counted before reading
        expect(
            world.clients[role].get(fill(SESSION, world.shared)), 200 if role == "alice" else 404
        )
    answers = {path: anonymous.get(path) for path in ("/health/live", "/health/ready", "/metrics")}
    assert answers["/health/ready"].json()["status"] == "ok"
    assert "nbplane_http_requests_total" in answers["/metrics"].text
    shared = world.shared
    names = {
        *world.tokens.values(),
        *world.clients,
        TEAM_A,
        shared.job,
        shared.notebook,
        shared.session,
        shared.execution,
        shared.connection,
        str(world.home),
    } - {ANONYMOUS, FORGED}
    for path, answer in answers.items():
        assert answer.status_code == 200, (path, answer.text)
        for name in names:
            found = re.search(rf"\b{re.escape(name)}\b", answer.text)
            assert found is None, f"{path} reveals {name!r}"
