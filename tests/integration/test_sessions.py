"""Sessions over HTTP on a real server with the real local launcher (real JupyterLab servers):
create and follow to ready, hibernate and resume with files kept, delete, access between users,
culling, restart reconciliation, servers that fail to start, bad input, anonymous limits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.integration.server_fixture import running_server, stop, wait_healthy
from tests.integration.session_helpers import (
    SESSIONS,
    as_user,
    create,
    events,
    jupyter,
    kill_server,
    server_address,
    session_server,
    stop_all,
    user_token,
    wait_gone,
    wait_status,
)


def test_create_follow_hibernate_resume_delete(tmp_path: Path, store_url: str) -> None:
    with session_server(tmp_path, store_url, NBPLANE_SESSION_POOL_SIZE="1") as server:
        alice = as_user(server, user_token(server, "alice", "analytics"))
        classes = alice.get(f"{SESSIONS}/resource-classes").json()
        assert [c["name"] for c in classes] == ["small", "large"] and classes[0]["default"]
        created = create(
            alice, resource_class="large", environment={"GREETING": "hi"}, directory="work"
        )
        # a server taken from the warm pool may already answer when the creation does
        assert created["status"] in ("starting", "running"), created
        assert created["resource_class"] == "large"
        assert created["cpu"] == "2" and created["memory"] == "8Gi"
        seen = events(alice, created["id"])
        assert seen[-1]["status"] == "running" and seen[-1]["ready"], seen[-1]
        assert all(step["status"] == "done" for step in seen[-1]["steps"]), seen[-1]["steps"]
        session = alice.get(f"{SESSIONS}/{created['id']}").json()
        assert session["url"] == f"{server.url}/sessions/{session['id']}/"
        assert session["environment"] == ["GREETING"]
        assert session["hibernate_at"] is not None and session["delete_at"] is None
        with jupyter(alice, session) as http:
            assert http.get("api/status").status_code == 200
            saved = http.put(
                "api/contents/notes.txt", json={"type": "file", "format": "text", "content": "kept"}
            )
            assert saved.status_code in (200, 201), saved.text
        address = server_address(server, session["id"])
        assert address.endswith(f"/sessions/{session['id']}/"), "its base URL is nbplane's path"
        assert httpx.get(f"{address}api/status").status_code == 403, "the server wants its token"
        running = alice.post(f"{SESSIONS}/{session['id']}/resume")
        assert running.status_code == 409 and running.json()["field"] == "status"

        hibernated = alice.post(f"{SESSIONS}/{session['id']}/hibernate")
        assert hibernated.status_code == 200, hibernated.text
        body = hibernated.json()
        assert body["status"] == "hibernated" and body["url"] is None and not body["ready"]
        assert body["delete_at"] is not None and body["hibernate_at"] is None
        try:
            httpx.get(f"{address}api/status", timeout=2)
            raise AssertionError("the hibernated server still answers")
        except httpx.TransportError:
            pass
        assert alice.post(f"{SESSIONS}/{session['id']}/hibernate").status_code == 409

        resumed = alice.post(f"{SESSIONS}/{session['id']}/resume")
        assert resumed.status_code == 200 and resumed.json()["status"] == "starting"
        session = wait_status(alice, session["id"], "running", "failed")
        assert session["status"] == "running", session
        server_address_after = server_address(server, session["id"])
        with jupyter(alice, session) as http:
            content = http.get("api/contents/notes.txt").json()
        assert content["content"] == "kept", "files survive hibernation"
        assert (
            "ServerApp" in alice.get(f"{SESSIONS}/{session['id']}/logs", params={"tail": 50}).text
        )

        assert alice.delete(f"{SESSIONS}/{session['id']}").status_code == 204
        assert alice.get(f"{SESSIONS}/{session['id']}").status_code == 404
        assert alice.get(SESSIONS).json() == []
        try:
            httpx.get(f"{server_address_after}api/status", timeout=2)
            raise AssertionError("the deleted session's server still answers")
        except httpx.TransportError:
            pass
        workspace = server.environment["NBPLANE_HOME"]
        assert (Path(workspace) / "sessions" / "alice" / session["id"] / "notes.txt").exists(), (
            "a delete without purge keeps the files"
        )


def test_users_see_and_touch_only_their_own(tmp_path: Path, store_url: str) -> None:
    with session_server(tmp_path, store_url) as server:
        alice = as_user(server, user_token(server, "alice", "analytics"))
        bob = as_user(server, user_token(server, "bob", "ops"))
        session = create(alice)
        path = f"{SESSIONS}/{session['id']}"
        for method, suffix in [
            ("GET", ""),
            ("GET", "/logs"),
            ("GET", "/events"),
            ("POST", "/hibernate"),
            ("POST", "/resume"),
            ("DELETE", ""),
        ]:
            response = bob.request(method, path + suffix)
            assert response.status_code == 404, (method, suffix, response.text)
        assert bob.get(SESSIONS).json() == []
        assert bob.get(SESSIONS, params={"all": "true"}).status_code == 404
        everyone = server.client.get(SESSIONS, params={"all": "true"}).json()
        assert [(s["id"], s["user"]) for s in everyone] == [(session["id"], "alice")]
        assert everyone[0]["url"] is None, "an admin does not open the user's session"
        assert [s["id"] for s in alice.get(SESSIONS).json()] == [session["id"]]
        assert alice.get(path).json()["status"] in ("starting", "running")
        assert bob.delete(path).status_code == 404
        workspace = Path(server.environment["NBPLANE_HOME"]) / "sessions" / "alice" / session["id"]
        assert workspace.is_dir()
        assert alice.delete(path, params={"purge": "true"}).status_code == 204
        assert not workspace.exists(), "purge deletes the files"


def test_bad_input_gets_clear_errors(tmp_path: Path, store_url: str) -> None:
    with session_server(tmp_path, store_url) as server:
        client = server.client
        unknown = client.post(SESSIONS, json={"resource_class": "huge"})
        assert unknown.status_code == 422 and unknown.json()["field"] == "resource_class"
        assert "small" in unknown.json()["message"]
        for environment in ({"1ABC": "x"}, {"A-B": "x"}, {"NBPLANE_TOKEN": "x"}):
            response = client.post(SESSIONS, json={"environment": environment})
            assert response.status_code == 422, response.text
            assert response.json()["errors"][0]["pointer"] == "/body/environment", response.text
        option = client.post(
            SESSIONS,
            json={"repository": "https://example.invalid/r.git", "commit": "--upload-pack=touch x"},
        )
        assert option.status_code == 422 and option.json()["field"] == "commit", option.text
        for body in (
            {"directory": "../elsewhere"},
            {"commit": "main"},
            {"repository": "not a url"},
            {"surprise": 1},
        ):
            assert client.post(SESSIONS, json=body).status_code == 422, body
        assert client.get(f"{SESSIONS}/nope").status_code == 404
        assert client.delete(f"{SESSIONS}/nope").status_code == 404
        assert client.get(f"{SESSIONS}/nope/logs", params={"tail": 0}).status_code == 422
        anonymous = httpx.post(f"{server.url}{SESSIONS}", json={})
        assert anonymous.status_code == 401, "anonymous sessions are off by default"
        assert client.get(SESSIONS).json() == [], "no bad request left a session behind"


def test_a_server_that_fails_to_start_ends_failed_with_its_logs(
    tmp_path: Path, store_url: str
) -> None:
    script = tmp_path / "fake-jupyter"
    script.write_text(
        "#!/bin/sh\nif [ \"$MODE\" = hang ]; then echo 'waiting forever'; "
        "exec sleep 600; fi\necho 'boom: no such notebook dir' >&2\nexit 1\n"
    )
    script.chmod(0o755)
    with session_server(
        tmp_path,
        store_url,
        NBPLANE_SESSION_COMMAND=str(script),
        NBPLANE_SESSION_START_TIMEOUT_SECONDS="4",
    ) as server:
        failing = create(server.client)
        hanging = create(server.client, environment={"MODE": "hang"})
        failed = wait_status(server.client, failing["id"], "failed", "running")
        assert failed["status"] == "failed" and not failed["ready"]
        assert "code 1" in failed["reason"] and "boom" in failed["reason"], failed["reason"]
        assert any(step["status"] == "failed" for step in failed["steps"]), failed["steps"]
        logs = server.client.get(f"{SESSIONS}/{failing['id']}/logs").text
        assert "boom: no such notebook dir" in logs
        late = wait_status(server.client, hanging["id"], "failed", "running")
        assert "start timeout" in late["reason"] and "waiting forever" in late["reason"], late
        assert events(server.client, failing["id"])[-1]["status"] == "failed"
        again = server.client.post(f"{SESSIONS}/{failing['id']}/resume")
        assert again.status_code == 200, "a failed session may be tried again"
        assert wait_status(server.client, failing["id"], "failed")["reason"]


def test_idle_sessions_are_hibernated_then_deleted(tmp_path: Path, store_url: str) -> None:
    with session_server(
        tmp_path,
        store_url,
        NBPLANE_SESSION_IDLE_HIBERNATE_SECONDS="3",
        NBPLANE_SESSION_HIBERNATED_DELETE_SECONDS="3",
    ) as server:
        session = wait_status(server.client, create(server.client)["id"], "running", "failed")
        assert session["status"] == "running", session
        assert session["hibernate_at"] > session["last_activity_at"]
        hibernated = wait_status(server.client, session["id"], "hibernated", timeout=60)
        assert "idle" in hibernated["reason"] and hibernated["delete_at"] is not None
        wait_gone(server.client, session["id"])


def test_activity_keeps_a_session_running(tmp_path: Path, store_url: str) -> None:
    with session_server(tmp_path, store_url, NBPLANE_SESSION_IDLE_HIBERNATE_SECONDS="4") as server:
        session = wait_status(server.client, create(server.client)["id"], "running", "failed")
        first = session["hibernate_at"]
        with jupyter(server.client, session) as http:
            for _ in range(12):  # a user at work: API calls count as the server's activity
                assert http.get("api/contents").status_code == 200
                time.sleep(0.5)
        now = server.client.get(f"{SESSIONS}/{session['id']}").json()
        assert now["status"] == "running" and now["hibernate_at"] > first, now


def test_restart_reconciles_records_with_what_runs(tmp_path: Path, store_url: str) -> None:
    notebooks = tmp_path / "apis"
    notebooks.mkdir()
    environment = {"NBPLANE_SESSION_POOL_SIZE": "0"}
    with running_server(notebooks, tmp_path / "home", store_url, environment=environment) as first:
        kept = wait_status(first.client, create(first.client)["id"], "running")
        lost = wait_status(first.client, create(first.client)["id"], "running")
        first.process.send_signal(signal.SIGKILL)  # no chance to tidy up
        first.process.wait()
        lost_address = server_address(first, lost["id"])
        kept_address = server_address(first, kept["id"])
        # this one's server ends while nbplane is down
        kill_server(first, lost["id"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{lost_address}api/status", timeout=1)
            except httpx.TransportError:
                break
            time.sleep(0.2)
        with first.log.open("a") as output:
            second = subprocess.Popen(
                first.args,
                env=first.environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
            )
        first.process = second
        try:
            wait_healthy(first)
            # the killed server's control lease runs out first (NBPLANE_LEASE_DURATION_SECONDS)
            found = wait_status(first.client, lost["id"], "failed", timeout=30)
            assert "gone" in found["reason"], found["reason"]
            alive = first.client.get(f"{SESSIONS}/{kept['id']}").json()
            assert alive["status"] == "running" and alive["ready"], alive
            with jupyter(first.client, alive) as http:
                assert http.get("api/status").status_code == 200, "it outlived the restart"
        finally:
            stop_all(first)
            stop(second)
    assert not _alive(kept_address), "deleting it after the restart stopped its server"


def _alive(address: str) -> bool:
    try:
        httpx.get(f"{address}api/status", timeout=2)
    except httpx.TransportError:
        return False
    return True


def test_anonymous_sessions_are_limited_and_short_lived(tmp_path: Path, store_url: str) -> None:
    with session_server(
        tmp_path,
        store_url,
        NBPLANE_SESSION_ANONYMOUS="true",
        NBPLANE_SESSION_ANONYMOUS_MAX="1",
        NBPLANE_SESSION_ANONYMOUS_LIFETIME_SECONDS="6",
    ) as server:
        nobody = as_user(server, None)
        session = create(nobody)
        assert session["anonymous"] and session["delete_at"] is not None
        second = nobody.post(SESSIONS, json={})
        assert second.status_code == 409 and second.json()["field"] == "anonymous"
        assert nobody.get(SESSIONS).status_code == 401, "anonymous callers cannot list"
        assert nobody.get(f"{SESSIONS}/{session['id']}").status_code == 200
        bob = as_user(server, user_token(server, "bob"))
        assert bob.get(f"{SESSIONS}/{session['id']}").status_code == 404
        wait_gone(nobody, session["id"], timeout=60)
        assert nobody.post(SESSIONS, json={}).status_code == 201, "its place is free again"


def test_two_replicas_cull_a_session_once(tmp_path: Path, store_url: str) -> None:
    """Both replicas watch every session; the idle one is hibernated once, not failed by the
    replica that did not stop it, and either replica resumes it."""
    notebooks = tmp_path / "apis"
    notebooks.mkdir()
    environment = {"NBPLANE_SESSION_POOL_SIZE": "0", "NBPLANE_SESSION_IDLE_HIBERNATE_SECONDS": "3"}
    with (
        running_server(notebooks, tmp_path / "home", store_url, environment=environment) as first,
        running_server(notebooks, tmp_path / "home", store_url, environment=environment) as second,
    ):
        try:
            session = wait_status(first.client, create(first.client)["id"], "running")
            hibernated = wait_status(second.client, session["id"], "hibernated", "failed")
            assert hibernated["status"] == "hibernated" and "idle" in hibernated["reason"]
            time.sleep(3)  # both replicas look at it again meanwhile
            assert first.client.get(f"{SESSIONS}/{session['id']}").json()["status"] == "hibernated"
            assert second.client.post(f"{SESSIONS}/{session['id']}/resume").status_code == 200
            resumed = wait_status(first.client, session["id"], "running", "failed")
            assert resumed["status"] == "running", resumed
        finally:
            stop_all(first)


def test_resource_classes_from_settings_and_teams(tmp_path: Path) -> None:
    classes = tmp_path / "classes.json"
    classes.write_text(
        json.dumps(
            [
                {"name": "tiny", "cpu": "250m", "memory": "512Mi", "description": "for reading"},
                {"name": "gpu", "cpu": "4", "memory": "16Gi", "default": True, "teams": ["ml"]},
            ]
        )
    )
    broken = tmp_path / "broken.json"
    broken.write_text('[{"name": "x", "cpu": 1}]')
    refused = subprocess.run(
        [sys.executable, "-m", "nbplane", "serve", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "NBPLANE_HOME": str(tmp_path / "home"),
            "NBPLANE_SESSION_RESOURCE_CLASSES": str(broken),
        },
    )
    assert refused.returncode == 2 and refused.stderr.startswith("error: "), refused.stderr
    assert str(broken) in refused.stderr and "cpu" in refused.stderr
    with session_server(
        tmp_path,
        f"sqlite:///{tmp_path / 'nbplane.db'}",
        NBPLANE_SESSION_RESOURCE_CLASSES=str(classes),
    ) as server:
        ada = as_user(server, user_token(server, "ada", "ml"))
        bob = as_user(server, user_token(server, "bob", "ops"))
        offered = ada.get(f"{SESSIONS}/resource-classes").json()
        assert [(c["name"], c["default"]) for c in offered] == [("tiny", False), ("gpu", True)]
        assert [c["name"] for c in bob.get(f"{SESSIONS}/resource-classes").json()] == ["tiny"]
        refused_class = bob.post(SESSIONS, json={"resource_class": "gpu"})
        assert refused_class.status_code == 422
        assert refused_class.json()["field"] == "resource_class"
        session = create(bob)
        assert (session["resource_class"], session["cpu"]) == ("tiny", "250m"), (
            "without the default class, the first one offered"
        )
