"""Tokens from the CLI, a server killed mid-execution, and workers apart from the server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.integration.api_notebooks import NUMBER_IN, write_all, write_api
from tests.integration.server_fixture import nbplane, running_server, stop, wait_healthy

SECONDS_IN = {"type": "object", "properties": {"seconds": {"type": "number"}}}
FAST_RECOVERY = {"NBPLANE_WORKER_HEARTBEAT_SECONDS": "0.3", "NBPLANE_WORKER_STALE_SECONDS": "2"}


def test_tokens_create_list_revoke(tmp_path: Path, store_url: str) -> None:
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    write_all(notebooks)
    with running_server(notebooks, tmp_path / "home", store_url) as server:
        env = server.environment
        second = nbplane("token", "create", "second", environment=env).stdout.strip()
        assert second.startswith("nbp_")
        listed = json.loads(nbplane("token", "list", "--output", "json", environment=env).stdout)
        assert "second" in {t["name"] for t in listed}
        assert second not in json.dumps(listed), "secrets are never listed"
        duplicate = subprocess.run(
            [sys.executable, "-m", "nbplane", "token", "create", "second"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert duplicate.returncode == 2 and "exists already" in duplicate.stderr
        nbplane("token", "revoke", "second", environment=env)
        refused = httpx.get(
            f"{server.url}/api/v1/notebooks", headers={"Authorization": f"Bearer {second}"}
        )
        assert refused.status_code == 401
        missing = subprocess.run(
            [sys.executable, "-m", "nbplane", "token", "revoke", "nope"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert missing.returncode == 2 and "no live token" in missing.stderr


def test_killed_server_loses_or_retries_the_running_execution(
    tmp_path: Path, store_url: str
) -> None:
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    sleep: list[str | tuple[str, list[str]]] = [
        ("seconds = 1", ["parameters"]),
        "import time\ntime.sleep(seconds)",
    ]
    write_api(notebooks, "sleepy", sleep, {"input": SECONDS_IN, "output": {}, "timeout": 60})
    write_api(
        notebooks,
        "sleepy_retry",
        sleep,
        {"input": SECONDS_IN, "output": {}, "timeout": 60, "retries": 1},
    )
    home = tmp_path / "home"
    with running_server(
        notebooks, home, store_url, "--workers", "2", environment=FAST_RECOVERY
    ) as server:
        lost = server.client.post(
            "/api/v1/notebooks/sleepy/executions", json={"parameters": {"seconds": 30}}
        ).json()["id"]
        retried = server.client.post(
            "/api/v1/notebooks/sleepy_retry/executions", json={"parameters": {"seconds": 2}}
        ).json()["id"]
        queued_behind = [
            server.client.post(
                "/api/v1/notebooks/sleepy/executions", json={"parameters": {"seconds": 0}}
            ).json()["id"]
            for _ in range(6)
        ]
        wait_until_running(server.client, [lost, retried])  # the queued ones wait behind them
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        restarted = subprocess.Popen(
            server.args,
            env=server.environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        server.process = restarted
        wait_healthy(server)
        final = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            final = {
                i: server.client.get(f"/api/v1/executions/{i}").json()
                for i in [lost, retried, *queued_behind]
            }
            if all(r["status"] not in ("queued", "running") for r in final.values()):
                break
            time.sleep(0.2)
        stop(restarted)
    assert final[lost]["status"] == "failed" and "worker lost" in final[lost]["reason"]
    assert final[retried]["status"] == "completed" and final[retried]["attempts"] == 2
    assert all(final[i]["status"] == "completed" for i in queued_behind), "nothing queued is lost"


def wait_until_running(client: httpx.Client, ids: list[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(client.get(f"/api/v1/executions/{i}").json()["status"] == "running" for i in ids):
            return
        time.sleep(0.05)
    raise AssertionError("executions did not start")


def test_workers_apart_from_the_web_server(tmp_path: Path, store_url: str) -> None:
    """On PostgreSQL the worker looks for work and beats only every few minutes here: it takes
    an execution queued while it runs, and hears its cancel, by NOTIFY alone, as the web
    server hears of their ends. (On SQLite, by polling.)"""
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    write_api(
        notebooks,
        "double",
        [("x = 1", ["parameters"]), "from nbplane import save_output\nsave_output({'y': 2*x})"],
        {"input": NUMBER_IN, "output": {}},
    )
    sleep: list[str | tuple[str, list[str]]] = [
        ("seconds = 1", ["parameters"]),
        "import time\ntime.sleep(seconds)",
    ]
    write_api(notebooks, "sleepy", sleep, {"input": SECONDS_IN, "output": {}, "timeout": 60})
    signalled = {
        "NBPLANE_WORKER_POLL_SECONDS": "300",
        "NBPLANE_WORKER_HEARTBEAT_SECONDS": "300",
        "NBPLANE_WORKER_STALE_SECONDS": "900",
    }
    environment = signalled if store_url.startswith("postgresql") else {}
    with running_server(
        notebooks, tmp_path / "home", store_url, "--workers", "0", environment=environment
    ) as server:
        queued = server.execute("double", {"x": 4}, wait=1)
        assert queued["status"] == "queued", "no worker in the web server"
        worker = subprocess.Popen(
            [sys.executable, "-m", "nbplane", "worker", "--notebooks-dir", str(notebooks)],
            env=server.environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            done = server.client.get(
                f"/api/v1/executions/{queued['id']}", params={"wait": 60}
            ).json()
            assert done["status"] == "completed" and done["output"] == {"y": 8}
            assert done["worker_id"] and str(worker.pid) in done["worker_id"]
            assert server.execute("double", {"x": 5}, wait=60)["output"] == {"y": 10}
            slow = server.client.post(
                "/api/v1/notebooks/sleepy/executions", json={"parameters": {"seconds": 60}}
            ).json()["id"]
            wait_until_running(server.client, [slow])
            cancelled = server.client.post(f"/api/v1/executions/{slow}/cancel").json()
            assert cancelled["status"] == "cancelled", cancelled
        finally:
            stop(worker)


def test_max_concurrency_keeps_the_rest_queued(tmp_path: Path, store_url: str) -> None:
    notebooks = tmp_path / "nb"
    notebooks.mkdir()
    write_api(
        notebooks,
        "single",
        [("seconds = 1", ["parameters"]), "import time\ntime.sleep(seconds)"],
        {"input": SECONDS_IN, "output": {}, "max_concurrency": 1},
    )
    with running_server(notebooks, tmp_path / "home", store_url) as server:
        first = server.client.post(
            "/api/v1/notebooks/single/executions", json={"parameters": {"seconds": 1.5}}
        ).json()["id"]
        second = server.client.post(
            "/api/v1/notebooks/single/executions", json={"parameters": {"seconds": 0}}
        ).json()["id"]
        wait_until_running(server.client, [first])
        assert server.client.get(f"/api/v1/executions/{second}").json()["status"] == "queued"
        done = server.client.get(f"/api/v1/executions/{second}", params={"wait": 30}).json()
        assert done["status"] == "completed"
        one = server.client.get(f"/api/v1/executions/{first}").json()
        assert done["started_at"] >= one["finished_at"], "one at a time"
