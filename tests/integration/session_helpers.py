"""What the session tests share: a server with sessions on, waiting for a session, and running
code in a kernel of a session's real Jupyter server (REST to start it, its websocket to talk)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.integration.server_fixture import Server, nbplane, running_server

SESSIONS = "/api/v1/sessions"
QUIET = {"NBPLANE_SESSION_POOL_SIZE": "0"}
"""Two cores are shared by every test: no servers started ahead unless a test wants them."""
_opened: list[httpx.Client] = []
"""Clients of users made during a test, closed when its server stops."""


@contextmanager
def session_server(tmp_path: Path, store_url: str, **environment: str) -> Iterator[Server]:
    """``nbplane serve`` with the local launcher; sessions it leaves are stopped afterwards."""
    notebooks = tmp_path / "apis"
    notebooks.mkdir(exist_ok=True)
    with running_server(
        notebooks, tmp_path / "home", store_url, environment={**QUIET, **environment}
    ) as server:
        try:
            yield server
        finally:
            stop_all(server)
            while _opened:
                _opened.pop().close()


def stop_all(server: Server) -> None:
    """Delete every session, so no Jupyter server outlives its test."""
    try:
        found = server.client.get(SESSIONS, params={"all": "true"})
    except httpx.HTTPError:
        return
    if found.status_code != 200:
        return
    for session in found.json():
        server.client.delete(f"{SESSIONS}/{session['id']}", params={"purge": "true"})


def user_token(server: Server, name: str, *teams: str) -> str:
    """A new user (unless they exist) and a new token of theirs."""
    created = f"{name}-{uuid.uuid4().hex[:6]}"
    listed = nbplane("user", "list", "--output", "json", environment=server.environment).stdout
    if name not in [user["name"] for user in json.loads(listed)]:
        nbplane(
            "user",
            "create",
            name,
            *[f"--team={team}" for team in teams],
            environment=server.environment,
        )
    return nbplane(
        "token", "create", created, "--user", name, environment=server.environment
    ).stdout.strip()


def as_user(server: Server, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = httpx.Client(base_url=server.url, headers=headers, timeout=60)
    _opened.append(client)
    return client


def create(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post(SESSIONS, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def wait_status(
    client: httpx.Client, session_id: str, *wanted: str, timeout: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"{SESSIONS}/{session_id}")
        assert response.status_code == 200, response.text
        record = response.json()
        if record["status"] in wanted:
            return record
        time.sleep(0.2)
    raise AssertionError(f"session {session_id} not {wanted} after {timeout}s: {record}")


def wait_gone(client: httpx.Client, session_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(f"{SESSIONS}/{session_id}").status_code == 404:
            return
        time.sleep(0.2)
    raise AssertionError(f"session {session_id} still there after {timeout}s")


def events(client: httpx.Client, session_id: str) -> list[dict[str, Any]]:
    """Every ``session`` event of the progress stream, until the server ends it."""
    from httpx_sse import connect_sse

    found = []
    with connect_sse(client, "GET", f"{SESSIONS}/{session_id}/events") as source:
        for event in source.iter_sse():
            assert event.event == "session", (event.event, event.data)
            found.append(json.loads(event.data))
    return found


def jupyter(client: httpx.Client, session: dict[str, Any]) -> httpx.Client:
    """A client of the session's Jupyter server through nbplane (``url``), as ``client``'s
    user."""
    return httpx.Client(base_url=session["url"], timeout=30, headers=credentials(client))


def credentials(client: httpx.Client) -> dict[str, str]:
    """The nbplane bearer token ``client`` sends."""
    return {"Authorization": client.headers["authorization"]}


def run_in_kernel(client: httpx.Client, session: dict[str, Any], code: str) -> str:
    """Run ``code`` in a new kernel of the session, through nbplane as ``client``'s user."""
    return kernel_run(session["url"], credentials(client), code)


def kernel_run(url: str, headers: dict[str, str], code: str, timeout: float = 60) -> str:
    """Start a kernel on the Jupyter server at ``url`` (REST, with ``headers``), run ``code``
    over its WebSocket, return what it printed (an error's traceback included), and shut the
    kernel down."""
    import websocket

    with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
        kernel = http.post("api/kernels", json={"name": "python3"})
        assert kernel.status_code == 201, kernel.text
        kernel_id = kernel.json()["id"]
        base = url.replace("http://", "ws://", 1)
        socket = websocket.create_connection(
            f"{base}api/kernels/{kernel_id}/channels",
            timeout=timeout,
            header=[f"{name}: {value}" for name, value in headers.items()],
        )
        try:
            return execute(socket, code, timeout)
        finally:
            socket.close()
            http.delete(f"api/kernels/{kernel_id}")


def execute(socket: Any, code: str, timeout: float) -> str:
    """Send an execute_request over a kernel's open WebSocket (Jupyter's JSON protocol) and
    gather its output until the kernel is idle."""
    message_id = uuid.uuid4().hex
    socket.send(
        json.dumps(
            {
                "header": {
                    "msg_id": message_id,
                    "msg_type": "execute_request",
                    "username": "t",
                    "session": uuid.uuid4().hex,
                    "version": "5.3",
                    "date": "",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "buffers": [],
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
            }
        )
    )
    output: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = json.loads(socket.recv())
        if message.get("parent_header", {}).get("msg_id") != message_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            output.append(content["text"])
        elif kind == "error":
            output.append("\n".join(content["traceback"]))
        elif kind in ("execute_result", "display_data"):
            output.append(content["data"].get("text/plain", ""))
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(output)
    raise AssertionError(f"the kernel did not finish in {timeout}s: {''.join(output)}")


def session_record(server: Server, session_id: str) -> Any:
    """The session's row as nbplane keeps it (its store): the server's own address and
    process, which nbplane keeps to itself."""
    from nbplane.store import open_store

    store = open_store(server.environment["NBPLANE_STORE_URL"])
    try:
        return store.sessions.get(session_id)
    finally:
        store.close()


def server_address(server: Server, session_id: str) -> str:
    """The session's Jupyter server's own address: to check that the server itself stopped
    or wants its token."""
    url = session_record(server, session_id).url
    assert url is not None, f"session {session_id} has no server address"
    return str(url)


def kill_server(server: Server, session_id: str) -> None:
    """End the session's Jupyter server behind nbplane's back: its process and everything it
    started (the sandbox's own processes too)."""
    import contextlib

    import psutil

    leader = psutil.Process(session_record(server, session_id).launcher_state["pid"])
    for process in [*leader.children(recursive=True), leader]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
