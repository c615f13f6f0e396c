"""Connections on a real server: admins define and grant them, values are encrypted at rest and
never shown, and a session's real kernel gets its grants as variables, its own nbplane token,
and ``job_input`` on the granted database."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text

from tests.integration.session_helpers import (
    SESSIONS,
    as_user,
    create,
    run_in_kernel,
    session_server,
    user_token,
    wait_status,
)

CONNECTIONS = "/api/v1/connections"
SECRETS = ("s3cr3t-l4ke-key", "t0k-of-the-api", "wh-passw0rd")


def warehouse(directory: Path) -> str:
    """A database with a table, whose URL also carries a (fake) password; in a directory a
    sandboxed session can read."""
    path = directory / "warehouse.sqlite"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE fruit (name TEXT)"))
        connection.execute(text("INSERT INTO fruit VALUES ('apple'), ('pear')"))
    engine.dispose()
    return f"sqlite:///{path}?password={SECRETS[2]}"


def test_connections_are_secret_and_reach_granted_sessions(
    tmp_path: Path, store_url: str, shared_dir: Path
) -> None:
    with session_server(tmp_path, store_url) as server:
        admin = server.client
        alice = as_user(server, user_token(server, "alice", "analytics"))
        bob = as_user(server, user_token(server, "bob", "ops"))
        bodies: list[dict[str, Any]] = [
            {
                "name": "warehouse",
                "kind": "database",
                "values": {"url": warehouse(shared_dir)},
                "description": "the sales warehouse",
            },
            {
                "name": "lake",
                "kind": "s3",
                "values": {
                    "bucket": "raw-data",
                    "access_key_id": "AKIA1",
                    "secret_access_key": SECRETS[0],
                },
            },
            {"name": "api", "kind": "generic", "values": {"token": SECRETS[1]}},
        ]
        for body in bodies:
            response = admin.post(CONNECTIONS, json=body)
            assert response.status_code == 201, response.text
            assert not any(secret in response.text for secret in SECRETS)
        assert admin.post(CONNECTIONS, json=bodies[2]).status_code == 409
        listed = admin.get(CONNECTIONS)
        assert [c["name"] for c in listed.json()] == ["api", "lake", "warehouse"]
        assert listed.json()[1]["keys"] == ["access_key_id", "bucket", "secret_access_key"]
        assert not any(secret in listed.text for secret in SECRETS)
        assert alice.get(CONNECTIONS).status_code == 404, "connections are for admins"
        assert alice.post(CONNECTIONS, json=bodies[2]).status_code == 404

        granted = admin.post(f"{CONNECTIONS}/warehouse/grants", json={"user": "alice"})
        assert granted.json()["grants"] == [{"kind": "user", "name": "alice"}]
        admin.post(f"{CONNECTIONS}/lake/grants", json={"team": "analytics"})
        assert (
            admin.post(f"{CONNECTIONS}/lake/grants", json={"user": "a", "team": "b"}).status_code
            == 422
        )

        from nbplane.store import open_store
        from nbplane.store.tables import connections

        store = open_store(store_url)
        try:
            with store.engine.connect() as connection:
                rows = connection.execute(select(connections)).all()
        finally:
            store.close()
        raw = b"".join(bytes(row.secret) for row in rows) + repr(rows).encode()
        assert rows and not any(secret.encode() in raw for secret in SECRETS), (
            "values are encrypted at rest"
        )

        session = create(alice)
        assert session["connections"] == ["lake", "warehouse"]
        session = wait_status(alice, session["id"], "running", "failed")
        assert session["status"] == "running", session
        printed = run_in_kernel(
            alice,
            session,
            """
import os
for name in sorted(os.environ):
    if name.startswith("NBPLANE_"):
        print(name, "=", os.environ[name])
from nbplane.client import NbplaneClient
print("me:", NbplaneClient.from_credentials().me().user)
""",
        )
        variables = dict(line.split(" = ", 1) for line in printed.splitlines() if " = " in line)
        assert variables["NBPLANE_CONNECTION_WAREHOUSE_URL"] == bodies[0]["values"]["url"]
        assert variables["NBPLANE_DB_URL"] == bodies[0]["values"]["url"]
        assert variables["NBPLANE_CONNECTION_LAKE_SECRET_ACCESS_KEY"] == SECRETS[0]
        assert variables["NBPLANE_CONNECTION_LAKE_BUCKET"] == "raw-data"
        assert variables["NBPLANE_CONNECTIONS"] == "lake,warehouse"
        assert "NBPLANE_CONNECTION_API_TOKEN" not in variables, "not granted to alice"
        assert variables["NBPLANE_URL"] == server.url
        assert "me: alice" in printed, "nbplane in the session speaks for its user, no login"
        queried = run_in_kernel(
            alice,
            session,
            "%load_ext nbplane\n%job\n"
            "print(job_input.execute_query("
            "'SELECT name FROM fruit ORDER BY name'))",
        )
        assert "[('apple',), ('pear',)]" in queried, queried

        bob_session = wait_status(bob, create(bob)["id"], "running", "failed")
        assert bob_session["connections"] == []
        bob_printed = run_in_kernel(
            bob,
            bob_session,
            "import os\nprint(sorted(k for k in os.environ if k.startswith('NBPLANE_CONN')))",
        )
        assert "[]" in bob_printed, bob_printed

        logs = alice.get(f"{SESSIONS}/{session['id']}/logs", params={"tail": 10000}).text
        assert not any(secret in logs for secret in SECRETS), "never in the session's logs"
        assert not any(secret in server.log.read_text() for secret in SECRETS)
        assert not any(
            secret in alice.get(f"{SESSIONS}/{session['id']}").text for secret in SECRETS
        )

        session_token = variables["NBPLANE_TOKEN"]
        assert alice.delete(f"{SESSIONS}/{session['id']}").status_code == 204
        deadline = time.monotonic() + 30
        status = 200
        while time.monotonic() < deadline and status != 401:
            status = as_user(server, session_token).get("/api/v1/me").status_code
            time.sleep(0.5)
        assert status == 401, "the session's token is revoked with it"

        revoked = admin.request("DELETE", f"{CONNECTIONS}/lake/grants", json={"team": "analytics"})
        assert revoked.status_code == 200 and revoked.json()["grants"] == []
        again = admin.request("DELETE", f"{CONNECTIONS}/lake/grants", json={"team": "analytics"})
        assert again.status_code == 404
        assert admin.delete(f"{CONNECTIONS}/api").status_code == 204
        assert admin.get(f"{CONNECTIONS}/api").status_code == 404
        later = create(alice)
        assert later["connections"] == ["warehouse"]


def test_bad_connections_get_clear_errors(tmp_path: Path, store_url: str) -> None:
    with session_server(tmp_path, store_url) as server:
        admin = server.client
        for body in (
            {"name": "Bad-Name", "kind": "generic", "values": {"a": "b"}},
            {"name": "db", "kind": "database", "values": {}},
            {"name": "db", "kind": "database", "values": {"url": "x", "extra": "y"}},
            {"name": "g", "kind": "generic", "values": {"1key": "v"}},
            {"name": "g", "kind": "generic", "values": {"key": "v", "KEY": "w"}},
            {"name": "g", "kind": "ftp", "values": {}},
        ):
            response = admin.post(CONNECTIONS, json=body)
            assert response.status_code == 422, (body, response.text)
        assert admin.post(f"{CONNECTIONS}/nope/grants", json={"user": "x"}).status_code == 404
        assert admin.delete(f"{CONNECTIONS}/nope").status_code == 404
        assert admin.get(CONNECTIONS).json() == []
