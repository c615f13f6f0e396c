"""``nbplane user`` and ``nbplane token`` against a real ``nbplane serve`` on loopback whose
first admin came from NBPLANE_ADMIN_TOKEN: given --url/--token, after ``nbplane login``, and on
the local store, with the same output; and ``nbplane user bootstrap`` for a chart's Job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server_fixture import Server, nbplane, running_server
from tests.integration.test_cli_control import client, one_line_error

SECRET = "first-admin-secret-from-the-chart-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("admin-cli")
    (root / "notebooks").mkdir()
    with running_server(
        root / "notebooks",
        root / "server-home",
        f"sqlite:///{root / 'nbplane.db'}",
        environment={"NBPLANE_ADMIN_TOKEN": SECRET, "NBPLANE_ADMIN_USER": "root"},
    ) as started:
        yield started


def test_admins_manage_users_and_tokens_on_a_server(server: Server, tmp_path: Path) -> None:
    admin = client(tmp_path / "admin")
    made = admin.run(
        "user", "create", "carol", "--team", "ops", "--url", server.url, "--token", SECRET
    )
    assert made.stdout.strip() == "user carol created in ops"
    remote = admin.run(
        "user", "list", "--output", "json", NBPLANE_URL=server.url, NBPLANE_TOKEN=SECRET
    )
    local = nbplane("user", "list", "--output", "json", environment=server.environment)
    assert json.loads(remote.stdout) == json.loads(local.stdout), "the same answer both ways"
    assert {user["name"]: user["admin"] for user in json.loads(remote.stdout)}["root"]

    admin.run("login", "--url", server.url, stdin=SECRET + "\n")
    created = admin.run("token", "create", "carol-ci", "--user", "carol", "--expires-in", "1d")
    carol_token = created.stdout.strip()
    assert carol_token.startswith("nbp_") and "of user carol created, expires" in created.stderr
    table = admin.run("token", "list").stdout
    assert "carol-ci" in table and "starts with" in table and "bootstrap" in table
    assert carol_token not in table and SECRET not in table and SECRET[:10] not in table

    carol = client(tmp_path / "carol")
    carol.run("login", "--url", server.url, stdin=carol_token + "\n")
    one_line_error(carol.run("user", "list", check=None), "managed by admins")
    carol.run("token", "create", "carol-laptop")
    assert [t["name"] for t in carol.json("token", "list")] == ["carol-ci", "carol-laptop"]
    one_line_error(carol.run("token", "revoke", "bootstrap", check=None), "no live token")
    assert carol.json("user", "teams") == [{"name": "ops", "members": ["carol"]}]

    admin.run("user", "admin", "carol")
    assert admin.json("user", "show", "carol")["admin"]
    admin.run("user", "join", "carol", "sales")
    assert admin.json("user", "show", "carol")["teams"] == ["ops", "sales"]
    admin.run("token", "revoke", "carol-ci")
    one_line_error(carol.run("token", "list", check=None), "unknown or revoked")
    admin.run("user", "delete", "carol", "--yes")
    one_line_error(admin.run("user", "show", "carol", check=None), "no user named 'carol'")

    beside = admin.run(
        "user",
        "list",
        "--output",
        "json",
        "--local",
        NBPLANE_STORE_URL=server.environment["NBPLANE_STORE_URL"],
    )
    assert json.loads(beside.stdout) == admin.json("user", "list"), "--local: the same store"
    one_line_error(admin.run("user", "list", "--local", "--url", server.url, check=None), "--local")


def test_bootstrap_reads_the_token_from_the_environment_or_stdin_never_argv(
    tmp_path: Path,
) -> None:
    environment = {
        **{key: value for key, value in os.environ.items() if not key.startswith("NBPLANE_")},
        "NBPLANE_HOME": str(tmp_path / "home"),
        "NBPLANE_STORE_URL": f"sqlite:///{tmp_path / 'nbplane.db'}",
        "NBPLANE_ADMIN_USER": "ops-admin",
    }

    def run(*args: str, stdin: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nbplane", *args],
            env={**environment, **extra},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    made = run("user", "bootstrap", stdin=SECRET + "\n")
    assert made.returncode == 0, made.stderr
    assert "ops-admin is an admin" in made.stdout and SECRET not in made.stdout + made.stderr
    again = run("user", "bootstrap", NBPLANE_ADMIN_TOKEN=SECRET)
    assert again.returncode == 0, again.stderr
    [token] = json.loads(run("token", "list", "--output", "json").stdout)
    assert (token["name"], token["user"], token["revoked_at"]) == ("bootstrap", "ops-admin", None)
    assert run("user", "bootstrap", SECRET).returncode == 2, "no token as an argument"
    one_line_error(run("user", "bootstrap", stdin="short\n"), "NBPLANE_ADMIN_TOKEN", "32")
    refused = run("serve", "--port", "9", NBPLANE_ADMIN_TOKEN="short")
    one_line_error(refused, "NBPLANE_ADMIN_TOKEN must be at least 32 characters")
