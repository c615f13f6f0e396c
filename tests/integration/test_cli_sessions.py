"""``nbplane session`` and ``nbplane connection`` in subprocesses, against a real server with the
real local launcher, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import BACKENDS, database_url
from tests.integration.server_fixture import Server, nbplane, running_server
from tests.integration.session_helpers import QUIET, stop_all
from tests.integration.test_cli_control import Cli, client, one_line_error


@dataclass
class Setup:
    server: Server
    admin: Cli
    alice: Cli


@pytest.fixture(scope="module", params=BACKENDS)
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("cli-sessions")
    (root / "apis").mkdir()
    with database_url(request.param, root) as url:
        store = url if url.startswith("postgresql") else f"sqlite:///{root / 'nbplane.db'}"
        with running_server(
            root / "apis", root / "server-home", store, environment=QUIET
        ) as server:
            clis = {}
            for name, admin in (("root", True), ("alice", False)):
                nbplane(
                    "user",
                    "create",
                    name,
                    *(["--admin"] if admin else ["--team=sales"]),
                    environment=server.environment,
                )
                token = nbplane(
                    "token", "create", f"{name}-cli", "--user", name, environment=server.environment
                ).stdout.strip()
                clis[name] = client(root / f"home-{name}")
                clis[name].run("login", "--url", server.url, "--token", token)
            try:
                yield Setup(server, clis["root"], clis["alice"])
            finally:
                stop_all(server)


def test_session_start_to_stop(setup: Setup) -> None:
    alice = setup.alice
    classes = alice.json("session", "classes")
    assert [c["name"] for c in classes] == ["small", "large"]
    started = alice.run("session", "start", "--resource-class", "large", "--env", "A=1")
    assert "✓ ready" in started.stdout and "is ready" in started.stdout, started.stdout
    url = next(line.split()[-1] for line in started.stdout.splitlines() if line.startswith("open "))
    [session] = alice.json("session", "list")
    assert url == f"{setup.server.url}/sessions/{session['id']}/", "behind nbplane's door"
    assert httpx.get(f"{url}api/status").status_code == 401, "no sign-in, no session"
    assert session["status"] == "running" and session["environment"] == ["A"]
    shown = alice.run("session", "show", session["id"]).stdout
    assert "running" in shown and "large" in shown and "hibernates at" in shown
    assert "ServerApp" in alice.run("session", "logs", session["id"], "--tail", "20").stdout
    hibernated = alice.run("session", "hibernate", session["id"])
    assert "hibernated" in hibernated.stdout
    resumed = alice.json("session", "resume", session["id"])
    assert resumed["status"] == "running" and resumed["url"], resumed
    everyone = setup.admin.json("session", "list", "--all")
    assert [(s["id"], s["user"]) for s in everyone] == [(session["id"], "alice")]
    assert setup.admin.json("session", "list") == []
    stopped = alice.run("session", "stop", session["id"], "--purge", "--yes")
    assert "stopped" in stopped.stdout
    one_line_error(alice.run("session", "show", session["id"], check=None), "no session")


def test_session_start_no_wait_and_bad_input(setup: Setup) -> None:
    alice = setup.alice
    one_line_error(
        alice.run("session", "start", "--resource-class", "huge", check=None),
        "unknown resource class",
        "small",
    )
    one_line_error(alice.run("session", "start", "--env", "NOEQUALS", check=None), "NAME=VALUE")
    one_line_error(alice.run("session", "start", "--env", "1X=2", check=None), "environment")
    quick = json.loads(alice.run("session", "start", "--no-wait", "--output", "json").stdout)
    assert quick["status"] == "starting"
    again = alice.run("session", "resume", quick["id"], check=None)
    one_line_error(again, "only a hibernated or failed session")
    alice.run("session", "stop", quick["id"])


def test_connection_commands(setup: Setup) -> None:
    admin, alice = setup.admin, setup.alice
    created = admin.run(
        "connection",
        "create",
        "warehouse",
        "--kind",
        "database",
        "--set",
        "url=sqlite:///tmp/w.sqlite?password=hunter2",
        "--default",
    )
    assert "keys url" in created.stdout and "hunter2" not in created.stdout
    hidden = admin.run(
        "connection", "create", "api", "--kind", "generic", "--set", "token", stdin="typed-secret\n"
    )
    assert "typed-secret" not in hidden.stdout + hidden.stderr
    granted = admin.json("connection", "grant", "warehouse", "--team", "sales")
    assert granted["grants"] == [{"kind": "team", "name": "sales"}]
    listed = admin.run("connection", "list")
    assert "warehouse (default)" in listed.stdout and "team sales" in listed.stdout
    assert "hunter2" not in listed.stdout and "typed-secret" not in listed.stdout
    one_line_error(alice.run("connection", "list", check=None), "admins")
    one_line_error(admin.run("connection", "grant", "api", check=None), "--user or --team")
    one_line_error(admin.run("connection", "create", "x", "--kind", "database", check=None), "url")
    admin.run("connection", "revoke", "warehouse", "--team", "sales")
    admin.run("connection", "delete", "api", "--yes")
    admin.run("connection", "delete", "warehouse", "--yes")
    assert admin.json("connection", "list") == []
