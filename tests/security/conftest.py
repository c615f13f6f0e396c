"""The security suite's server: one in-process nbplane app shared by every test of
``tests/security`` (the FastAPI app factory, a fresh SQLite store in a temporary NBPLANE_HOME).

Two teams, each with a plain member and an admin, and a second member of team A:

    user   team    admin  in the access matrix
    alice  team-a  no     the owner of every object below
    carol  team-a  no     a teammate: sees team A's jobs, not alice's sessions or executions
    bob    team-b  no     an outsider: sees nothing of team A's
    ann    team-a  yes    defines and grants the connection
    ben    team-b  yes    an admin of another team: sees everything

alice owns a job (a version, a deployment, properties, a secret and a finished execution with a
log), a finished notebook API execution (output, notebook and logs) and a session; a database
connection whose URL holds a password is granted to team A. The sessions' plane runs, and a
session's server is a command that exits at once, so every session settles as ``failed``
within a moment; the jobs' plane and the API worker do not run (no job process, no kernel):
executions are finished in the store, as their runner would. Every client records each answer
it receives and the server's log is captured, so test_secret_scan.py can look for the clear
text of the secrets the suite set in all of them.

The suite's NBPLANE_* environment holds only while the server starts (it keeps the settings it
read then), so the package's other modules (test_fuzz.py, test_sandbox.py) see their own.
Another module may adopt the recording clients: ``world.client(user)``.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI

from nbplane.apis.models import ExecutionStatus
from nbplane.deployments.context import new_execution_token
from nbplane.deployments.lifecycle import JobExecutionLifecycle
from nbplane.deployments.models import JobExecutionStatus
from nbplane.jobs.models import CreateRun
from nbplane.jobs.scaffold import export_job
from nbplane.server.app import ServerConfig, create_app
from nbplane.sessions.reconciler import SessionReconciler
from nbplane.settings import get_settings
from nbplane.store import Store
from nbplane.store.auth import token_hash
from tests.conftest import write_notebook
from tests.integration.api_notebooks import write_api

TEAM_A, TEAM_B = "team-a", "team-b"
USERS = {
    "alice": (TEAM_A, False),
    "carol": (TEAM_A, False),
    "ann": (TEAM_A, True),
    "bob": (TEAM_B, False),
    "ben": (TEAM_B, True),
}
"""Each user's team and whether they are an admin."""
ANONYMOUS = "anonymous"
FORGED = "forged"
"""A caller with a bearer token nbplane never made."""
NOTEBOOK = "echo"
SETTLED = ("running", "failed", "hibernated")


@dataclass(frozen=True)
class Secrets:
    """Clear-text values the suite hands the server, fresh each run; none may come back out."""

    job: str
    connection: str
    session: str
    webhook: str
    """The path of a job's notification webhook, the credential of a Slack-like one."""
    admin: str
    """NBPLANE_ADMIN_TOKEN: the first admin's (``root``) token, set as the server starts."""

    @classmethod
    def new(cls) -> Secrets:
        kinds = ("job", "connection", "session", "webhook", "admin")
        return cls(*(f"{kind}-secret-{secrets.token_hex(12)}" for kind in kinds))

    def named(self) -> dict[str, str]:
        return {
            "job secret": self.job,
            "connection password": self.connection,
            "session environment secret": self.session,
            "webhook URL's path": self.webhook,
            "NBPLANE_ADMIN_TOKEN": self.admin,
        }

    @property
    def webhook_url(self) -> str:
        return f"https://hooks.example.com/services/{self.webhook}"


@dataclass(frozen=True)
class Objects:
    """alice's objects (team A): what the access matrix asks for as every role."""

    team: str
    job: str
    version: str
    job_execution: str
    notebook: str
    execution: str
    """A notebook API execution."""
    session: str
    connection: str
    user: str = "alice"
    token: str = "alice-security"
    """alice's own token, by name."""


@dataclass(frozen=True)
class Exchange:
    """One answer a security client received."""

    user: str
    method: str
    path: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class InProcess(httpx.BaseTransport):
    """Sends a synchronous client's requests to the app (httpx's ASGI transport) on the event
    loop its lifespan runs in; a 5xx is answered, not raised."""

    def __init__(self, app: FastAPI, portal: BlockingPortal) -> None:
        self.portal = portal
        self.asgi = httpx.ASGITransport(app, raise_app_exceptions=False)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def send() -> httpx.Response:
            response = await self.asgi.handle_async_request(request)
            return httpx.Response(
                response.status_code, headers=response.headers, content=await response.aread()
            )

        return self.portal.call(send)


class RecordingClient(httpx.Client):
    """A user's client of the suite's app (cookies of its own, redirects not followed) that
    records every answer in ``exchanges`` for the secret scan."""

    def __init__(
        self, transport: InProcess, user: str, token: str | None, exchanges: list[Exchange]
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        super().__init__(
            transport=transport,
            base_url="http://testserver",
            headers=headers,
            follow_redirects=False,
        )
        self.user, self.exchanges = user, exchanges

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        response = super().send(request, **kwargs)
        response.read()
        self.exchanges.append(
            Exchange(
                self.user,
                request.method,
                request.url.path,
                response.status_code,
                list(response.headers.items()),
                response.content,
            )
        )
        return response


class LogCapture(logging.Handler):
    """The server's log while the suite runs: nbplane's loggers from DEBUG, others as they
    are configured (WARNING by default, as under ``nbplane serve``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def expect(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path}: {response.status_code}, "
        f"wanted {status}: {response.text}"
    )
    return response.json() if response.content else None


@dataclass
class World:
    """The app, its users' clients, alice's objects, the secrets set and what came back."""

    app: FastAPI
    portal: BlockingPortal
    home: Path
    archive: bytes
    log: LogCapture
    secrets: Secrets = field(default_factory=Secrets.new)
    tokens: dict[str, str] = field(default_factory=dict)
    exchanges: list[Exchange] = field(default_factory=list)
    clients: dict[str, RecordingClient] = field(default_factory=dict)
    objects: Objects | None = None
    others: Objects | None = None
    """bob's job in team B (the rest as alice's): paths of his own team around alice's ids."""
    plane: SessionReconciler | None = None
    _made: Iterator[int] = field(default_factory=itertools.count)
    _opened: list[RecordingClient] = field(default_factory=list)

    @property
    def store(self) -> Store:
        store: Store = self.app.state.store
        return store

    @property
    def shared(self) -> Objects:
        assert self.objects is not None
        return self.objects

    def client(
        self, user: str, token: str | None = None, exchanges: list[Exchange] | None = None
    ) -> RecordingClient:
        """A new recording client for ``user``, with their token unless another is given (the
        user ``anonymous`` has none). Its answers go to ``exchanges``, the secret scan's list
        unless told otherwise: a job execution's own client, whose answers may rightly hold
        that job's secrets, keeps its own list."""
        made = RecordingClient(
            InProcess(self.app, self.portal),
            user,
            token or self.tokens.get(user),
            self.exchanges if exchanges is None else exchanges,
        )
        self._opened.append(made)
        return made

    def start(self) -> None:
        for user, (team, admin) in USERS.items():
            self.store.auth.create_user(user, admin=admin)
            self.store.auth.add_member(user, team)
            self.tokens[user] = self.store.auth.create_token(f"{user}-security", user)[1]
        self.clients = {user: self.client(user) for user in [ANONYMOUS, *USERS]}
        self.clients[FORGED] = self.client(FORGED, "nbp_" + secrets.token_urlsafe(32))

        async def start_plane() -> SessionReconciler:
            plane = SessionReconciler(self.app.state.sessions.lifecycle)
            await plane.start()
            return plane

        self.plane = self.portal.call(start_plane)
        self.objects = Objects(
            team=TEAM_A,
            notebook=NOTEBOOK,
            execution=self.make_execution(),
            connection=self.make_connection("warehouse"),
            session=self.make_session(),
            **self.make_job("daily"),
        )
        bobs = self.make_job("nightly", "bob", TEAM_B, job_archive(self.home.parent, "nightly"))
        self.others = replace(self.objects, team=TEAM_B, **bobs)

    def close(self) -> None:
        for client in self._opened:
            client.close()
        if self.plane is not None:
            self.portal.call(self.plane.stop)

    @contextmanager
    def objects_for(self, kind: str | None) -> Iterator[Objects]:
        """alice's objects; given a ``kind`` (job, session, connection, user or token), with a
        new one of that kind for a request that changes or removes it, removed afterwards (so
        alice stays within any per-user limit). A new user is in team A; a new token is
        alice's."""
        if kind is None:
            yield self.shared
            return
        tag = next(self._made)
        if kind == "job":
            objects = replace(self.shared, **self.make_job(f"doomed-{tag}"))
            remover, path = "alice", f"/api/v1/teams/{TEAM_A}/jobs/{objects.job}?force=true"
        elif kind == "session":
            objects = replace(self.shared, session=self.make_session())
            remover, path = "alice", f"/api/v1/sessions/{objects.session}"
        elif kind == "user":
            objects = replace(self.shared, user=f"doomed-user-{tag}")
            self.store.auth.create_user(objects.user)
            self.store.auth.add_member(objects.user, TEAM_A)
            remover, path = "ben", f"/api/v1/users/{objects.user}"
        elif kind == "token":
            objects = replace(self.shared, token=f"doomed-token-{tag}")
            self.store.auth.create_token(objects.token, "alice")
            remover, path = "alice", f"/api/v1/tokens/{objects.token}"
        else:
            objects = replace(self.shared, connection=self.make_connection(f"doomed_{tag}"))
            remover, path = "ann", f"/api/v1/connections/{objects.connection}"
        try:
            yield objects
        finally:
            gone = self.clients[remover].delete(path)
            assert gone.status_code in (204, 404), f"removing {path}: {gone.text}"

    def make_job(
        self, name: str, user: str = "alice", team: str = TEAM_A, archive: bytes | None = None
    ) -> dict[str, str]:
        """A job (alice's unless told), uploaded, deployed, with a secret, and one finished
        execution."""
        client = self.clients[user]
        path = f"/api/v1/teams/{team}/jobs/{name}"
        expect(client.post(f"/api/v1/teams/{team}/jobs", json={"name": name}), 201)
        version = expect(
            client.post(
                f"{path}/versions",
                content=archive or self.archive,
                headers={"content-type": "application/zip"},
            ),
            201,
        )["id"]
        notify = [{"url": self.secrets.webhook_url, "events": ["failed", "completed"]}]
        deployment = {"arguments": {"day": "2024-01-01"}, "notifications": notify}
        expect(client.put(f"{path}/deployment", json=deployment), 200)
        expect(client.patch(f"{path}/properties", json={"values": {"rows": 10}}), 200)
        expect(client.patch(f"{path}/secrets", json={"values": {"api_key": self.secrets.job}}), 200)
        execution = expect(client.post(f"{path}/executions", json={}), 201)["id"]
        self.store.deployments.append_log(execution, "10_main.ipynb: step 1 done\n")
        run = self.store.create_run(
            CreateRun(
                job_dir="/job",
                job_name=name,
                arguments={},
                db_url="sqlite://",
                resumed=False,
                plan=[],
            ),
            execution,
        )
        self.store.deployments.set_run(execution, run.id)
        lifecycle = JobExecutionLifecycle(self.store.deployments)
        lifecycle.start(execution, 1, {}, token_hash(new_execution_token()))
        lifecycle.finish(execution, JobExecutionStatus.COMPLETED, None)
        return {"job": name, "version": version, "job_execution": execution}

    def make_execution(self) -> str:
        """alice's notebook API execution, finished with an output, its notebook and logs."""
        alice = self.clients["alice"]
        made = expect(
            alice.post(
                f"/api/v1/notebooks/{NOTEBOOK}/executions", json={"parameters": {"text": "hello"}}
            ),
            201,
        )
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(text)")])
        # no worker runs here: play one, which takes the execution before it ends it
        [taken] = self.store.executions.claim("security-worker", datetime.now(UTC)).taken
        assert taken.id == made["id"]
        ended = {
            "status": ExecutionStatus.COMPLETED,
            "finished_at": datetime.now(UTC),
            "output": {"text": "hello"},
            "has_output": True,
        }
        self.store.executions.finish(
            taken.model_copy(update=ended),
            "security-worker",
            {"ipynb": nbformat.writes(notebook), "logs": "hello\n"},
        )
        return str(made["id"])

    def make_connection(self, name: str) -> str:
        """A database connection (a password in its URL) granted to team A, by ann."""
        ann = self.clients["ann"]
        url = f"postgresql://warehouse:{self.secrets.connection}@db.internal:5432/warehouse"
        expect(
            ann.post(
                "/api/v1/connections",
                json={"name": name, "kind": "database", "values": {"url": url}},
            ),
            201,
        )
        expect(ann.post(f"/api/v1/connections/{name}/grants", json={"team": TEAM_A}), 200)
        return name

    def make_session(self, user: str = "alice") -> str:
        """A session (alice's unless told) with a secret in its environment, settled (failed:
        its server exits at once)."""
        client = self.clients[user]
        made = expect(
            client.post(
                "/api/v1/sessions",
                json={"environment": {"WAREHOUSE_API_KEY": self.secrets.session}},
            ),
            201,
        )
        session = f"/api/v1/sessions/{made['id']}"
        deadline = time.monotonic() + 30
        while (status := expect(client.get(session), 200)["status"]) not in SETTLED:
            assert time.monotonic() < deadline, f"session {made['id']} is still {status}"
            time.sleep(0.05)
        assert status == "failed", f"session {made['id']} is {status}, not failed"
        return str(made["id"])


def job_archive(directory: Path, name: str) -> bytes:
    """The zip `nbplane job export` makes of a one-step job (its bytes differ by name)."""
    job = directory / name
    job.mkdir()
    write_notebook(job / "10_main.ipynb", [f"print('{name}: step 1 done')"])
    export_job(job, directory / f"{name}.zip")
    return (directory / f"{name}.zip").read_bytes()


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The shared app of the security suite, with its users, objects and recording clients."""
    root = tmp_path_factory.mktemp("security")
    home, apis = root / "home", root / "apis"
    home.mkdir()
    apis.mkdir()
    write_api(
        apis,
        NOTEBOOK,
        [
            ("text = ''", ["parameters"]),
            "from nbplane import save_output\nsave_output({'text': text})",
        ],
        {"input": {"type": "object", "properties": {"text": {"type": "string"}}}, "output": {}},
    )
    archive = job_archive(root, "daily")
    failing = shutil.which("false")
    assert failing is not None, "the sessions' command: a program that exits at once"
    capture = LogCapture()
    made_secrets = Secrets.new()
    root_logger, nbplane_logger = logging.getLogger(), logging.getLogger("nbplane")
    with ExitStack() as stack:
        root_logger.addHandler(capture)
        stack.callback(root_logger.removeHandler, capture)
        stack.callback(nbplane_logger.setLevel, nbplane_logger.level)
        nbplane_logger.setLevel(logging.DEBUG)
        portal = stack.enter_context(start_blocking_portal())
        app = create_app(
            ServerConfig(
                notebooks_dir=apis,
                store_url=f"sqlite:///{home / 'nbplane.db'}",
                cache_dir=home / "cache" / "executions",
                run_worker=False,
                run_control=False,
                public_url="http://testserver",
            )
        )
        with pytest.MonkeyPatch.context() as patch:  # the server reads them as it starts
            for name in list(os.environ):
                if name.startswith("NBPLANE_") and not name.startswith("NBPLANE_TEST_"):
                    patch.delenv(name)
            patch.setenv("NBPLANE_HOME", str(home))
            patch.setenv("NBPLANE_SESSION_COMMAND", failing)
            patch.setenv("NBPLANE_SESSION_POOL_SIZE", "0")
            patch.setenv("NBPLANE_ADMIN_TOKEN", made_secrets.admin)
            patch.setenv("NBPLANE_ADMIN_USER", "root")
            get_settings.cache_clear()
            stack.enter_context(portal.wrap_async_context_manager(app.router.lifespan_context(app)))
        get_settings.cache_clear()  # the other modules of the package see their own settings
        made = World(app, portal, home, archive, capture, made_secrets)
        stack.callback(made.close)
        made.start()
        yield made
