"""A real ``nbplane serve`` on a loopback port, with a token, for the API tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    url: str
    token: str
    process: subprocess.Popen[str]
    environment: dict[str, str]
    args: list[str]
    log: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            base_url=self.url, timeout=60, headers={"Authorization": f"Bearer {self.token}"}
        )

    def execute(self, notebook: str, parameters: dict[str, Any], wait: float = 30) -> Any:
        response = self.client.post(
            f"/api/v1/notebooks/{notebook}/executions",
            params={"wait": wait},
            json={"parameters": parameters},
        )
        assert response.status_code == 201, response.text
        return response.json()


def nbplane(*args: str, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbplane", *args],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def admin_token(store_url: str, name: str) -> str:
    """A new token of the admin user, as ``nbplane token create NAME`` makes it, but in this
    process: a subprocess would cost an interpreter start for every server a test starts."""
    from nbplane.store import open_store

    store = open_store(store_url)
    try:
        return store.auth.create_token(name, user="admin")[1]
    finally:
        store.close()


@contextmanager
def running_server(
    notebooks: Path,
    home: Path,
    store_url: str,
    *extra: str,
    environment: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[Server]:
    env = {
        **os.environ,
        "NBPLANE_HOME": str(home),
        "NBPLANE_STORE_URL": store_url,
        **(environment or {}),
    }
    token = admin_token(store_url, f"tests-{uuid.uuid4().hex[:8]}")
    port = port or free_port()
    args = [
        sys.executable,
        "-m",
        "nbplane",
        "serve",
        "--notebooks-dir",
        str(notebooks),
        "--port",
        str(port),
        *extra,
    ]
    log = home / f"server-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as output:
        process = subprocess.Popen(
            args, env=env, stdout=output, stderr=subprocess.STDOUT, text=True
        )
    server = Server(f"http://127.0.0.1:{port}", token, process, env, args, log)
    try:
        wait_healthy(server)
        yield server
    finally:
        server.client.close()
        stop(process)


def wait_healthy(server: Server, timeout: float = 180) -> None:
    """Until the server answers /health. The time allowed is generous: with several pytest
    workers on two cores, servers starting side by side wait for each other's imports."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited: {server.log.read_text()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server not healthy in {timeout}s: {server.log.read_text()}")


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
