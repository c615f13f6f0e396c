"""A hostile job deployed by a plain member of one team, on a real server with the local
executor, tries what a job once could: read the server's key, database and environment, use its
credential on the rest of the API, write another team's run records, keep its credential after
its execution. Nothing succeeds, while the same job reads its own secret; and connections granted
to a team reach that team's deployed jobs (and no other's) without their values in any log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.integration.server_fixture import Server, running_server
from tests.integration.session_helpers import as_user, user_token
from tests.integration.test_control import deploy, execute, job_archive
from tests.security.hostile import HOSTILE, attempts_that_succeeded, digest
from tests.security.scan import files_under, findings

ALICE_SECRET = "alice-job-secret-4711"
ALICE_PASSWORD = "alice-warehouse-pw-0815"
BOB_SECRET = "bob-own-secret-1234"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    notebooks = tmp_path / "apis"
    notebooks.mkdir()
    with running_server(
        notebooks, tmp_path / "home", f"sqlite:///{tmp_path / 'nbplane.db'}"
    ) as running:
        yield running


def warehouse(directory: Path) -> str:
    """A database of team sales, where a sandboxed job can read it (not in /tmp)."""
    path = directory / "sales.sqlite"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE fruit (name TEXT)"))
        connection.execute(text("INSERT INTO fruit VALUES ('apple'), ('pear')"))
    engine.dispose()
    return f"sqlite:///{path}"


def finished(client: httpx.Client, path: str, execution_id: str) -> dict[str, Any]:
    found = client.get(f"{path}/executions/{execution_id}", params={"wait": 90})
    assert found.status_code == 200, found.text
    record = dict(found.json())
    assert record["status"] in ("completed", "failed"), record
    return record


def test_a_hostile_job_reaches_nothing_of_another_team(
    server: Server, tmp_path: Path, shared_dir: Path
) -> None:
    admin = server.client
    alice = as_user(server, user_token(server, "alice", "sales"))
    bob = as_user(server, user_token(server, "bob", "ops"))
    granted = admin.post(
        "/api/v1/connections",
        json={
            "name": "warehouse",
            "kind": "database",
            "default": True,
            "values": {"url": warehouse(shared_dir)},
        },
    )
    assert granted.status_code == 201, granted.text
    assert admin.post(
        "/api/v1/connections/warehouse/grants", json={"team": "sales"}
    ).status_code in (200, 201)

    # alice's job, with a secret, runs once on her team's database
    sales = "/api/v1/teams/sales/jobs/daily"
    counting = "print(job_input.execute_query('SELECT count(*) FROM fruit'))"
    deploy(server, job_archive(tmp_path, counting, name="sales"), "sales", "daily")
    assert (
        alice.patch(f"{sales}/secrets", json={"values": {"token": ALICE_SECRET}}).status_code == 200
    )
    alices = finished(alice, sales, execute(server, job=sales)["id"])
    assert alices["status"] == "completed", alices
    alice_run = alices["steps"][0]["run_id"]

    # bob deploys the hostile job in his own team, with a secret of his own
    ops = "/api/v1/teams/ops/jobs/nightly"
    assert bob.post("/api/v1/teams/ops/jobs", json={"name": "nightly"}).status_code == 201
    uploaded = bob.post(
        f"{ops}/versions",
        content=job_archive(tmp_path, HOSTILE, name="ops"),
        headers={"content-type": "application/zip"},
    )
    assert uploaded.status_code in (200, 201), uploaded.text
    assert bob.put(f"{ops}/deployment", json={}).status_code == 200
    assert bob.patch(f"{ops}/secrets", json={"values": {"mine": BOB_SECRET}}).status_code == 200
    facts = {
        "home": str(tmp_path / "home"),
        "store": str(tmp_path / "nbplane.db"),
        "server_pid": server.process.pid,
        "alice_run": alice_run,
        "expected": digest(BOB_SECRET),
    }
    started = bob.post(f"{ops}/executions", json={"arguments": facts})
    assert started.status_code == 201, started.text
    record = finished(bob, ops, started.json()["id"])
    log = bob.get(f"{ops}/executions/{record['id']}/logs").text
    assert record["status"] == "completed", log
    assert attempts_that_succeeded(log) == {}
    for secret in (ALICE_SECRET, ALICE_PASSWORD, BOB_SECRET):
        assert secret not in log

    # alice's run is untouched, and the credential ended with its execution
    again = alice.get(f"{sales}/executions/{alices['id']}").json()
    assert again["status"] == "completed" and len(again["steps"]) == 1, again
    credential = log.split("CREDENTIAL ", 1)[1].split()[0]
    with httpx.Client(
        base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {credential}"}
    ) as ended:
        assert ended.get("/api/v1/execution").status_code == 401
        assert ended.get("/api/v1/execution/secrets").status_code == 401
        assert ended.get("/api/v1/me").status_code == 401
    # nothing on disk (the database, the server's log, execution directories) holds them in clear
    secrets = {"alice's secret": ALICE_SECRET, "her password": ALICE_PASSWORD, "bob's": BOB_SECRET}
    assert findings(secrets, files_under(tmp_path, "the test's files")) == []


def test_connections_reach_the_teams_deployed_jobs(
    server: Server, tmp_path: Path, shared_dir: Path
) -> None:
    admin = server.client
    for body in (
        {
            "name": "warehouse",
            "kind": "database",
            "default": True,
            "values": {"url": warehouse(shared_dir)},
        },
        {
            "name": "lake",
            "kind": "s3",
            "values": {"bucket": "raw-data", "secret_access_key": ALICE_SECRET},
        },
        {"name": "api", "kind": "generic", "values": {"token": ALICE_PASSWORD}},
    ):
        assert admin.post("/api/v1/connections", json=body).status_code == 201
        assert admin.post(
            f"/api/v1/connections/{body['name']}/grants", json={"team": "sales"}
        ).status_code in (200, 201)
    job = job_archive(
        tmp_path,
        "print('rows', job_input.execute_query('SELECT name FROM fruit ORDER BY name'))",
        "lake = job_input.get_connection('lake')\nprint('bucket', lake['bucket'])\n"
        "print('key', lake['secret_access_key'])\n"
        "print('token', job_input.get_connection('api')['token'])",
        "cursor = job_input.get_managed_connection('warehouse').cursor()\n"
        "print('count', cursor.execute('SELECT count(*) FROM fruit').fetchall())",
        name="sales",
    )
    path = "/api/v1/teams/sales/jobs/daily"
    deploy(server, job, "sales", "daily")
    record = finished(admin, path, execute(server, job=path)["id"])
    log = admin.get(f"{path}/executions/{record['id']}/logs").text
    assert record["status"] == "completed", log
    assert "rows [('apple',), ('pear',)]" in log, "the team's default database is the job's"
    assert "bucket raw-data" in log and "count [(2,)]" in log
    assert "key [secret]" in log and "token [secret]" in log, "values are redacted like secrets"
    everything = log + json.dumps(record)
    assert ALICE_SECRET not in everything and ALICE_PASSWORD not in everything
    secrets = {"the lake key": ALICE_SECRET, "the api token": ALICE_PASSWORD}
    assert findings(secrets, files_under(tmp_path / "home", "NBPLANE_HOME")) == []

    # the same job in another team sees neither connection
    deploy(server, job, "ops", "daily")
    other = finished(
        admin,
        "/api/v1/teams/ops/jobs/daily",
        execute(server, job="/api/v1/teams/ops/jobs/daily")["id"],
    )
    assert other["status"] == "failed"
    assert "no such table: fruit" in (other["reason"] or ""), other
