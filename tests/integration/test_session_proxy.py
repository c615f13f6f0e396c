"""Sessions behind nbplane's door, on a real server with the real local launcher: a real
JupyterLab server reached at ``/sessions/{id}/`` (its API, files, redirects, a kernel over the
proxied WebSocket), its own token never in what a user gets; and, with a session command that
echoes what reaches it, nbplane's credentials and hop-by-hop headers never forwarded, the
session's answers kept from touching nbplane's cookies or pages."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import websocket

from nbplane.platform.secrets import SecretBox
from nbplane.settings import Settings
from tests.integration.server_fixture import Server
from tests.integration.session_helpers import (
    SESSIONS,
    as_user,
    create,
    credentials,
    execute,
    jupyter,
    kill_server,
    session_record,
    session_server,
    user_token,
    wait_status,
)

ECHO = Path(__file__).with_name("echo_jupyter.py")


def session_token(server: Server, session_id: str) -> str:
    """The session's Jupyter token, as nbplane keeps it sealed."""
    box = SecretBox(Settings(home=Path(server.environment["NBPLANE_HOME"])))
    return str(box.open(session_record(server, session_id).secrets)["token"])


def test_a_real_session_through_the_proxy(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'nbplane.db'}"
    with session_server(tmp_path, store_url, NBPLANE_SESSION_POOL_SIZE="1") as server:
        alice = as_user(server, user_token(server, "alice", "analytics"))
        session = wait_status(alice, create(alice)["id"], "running", "failed")
        assert session["status"] == "running", session
        url = f"{server.url}/sessions/{session['id']}/"
        assert session["url"] == url and "token" not in session and "server_url" not in session
        token = session_token(server, session["id"])
        seen: list[str] = [json.dumps(session), alice.get(SESSIONS).text]
        with jupyter(alice, session) as http:
            status = http.get("api/status")
            assert status.status_code == 200, status.text
            name = "notes with space é.txt"
            saved = http.put(
                f"api/contents/{name}", json={"type": "file", "format": "text", "content": "kept"}
            )
            assert saved.status_code in (200, 201), saved.text
            assert http.get(f"api/contents/{name}").json()["content"] == "kept"
            big = "x" * 3_000_000  # over the server's --max-body: streamed through, not refused
            upload = http.put(
                "api/contents/big.txt", json={"type": "file", "format": "text", "content": big}
            )
            assert upload.status_code in (200, 201), upload.text[:300]
            assert http.head("api/contents/big.txt").status_code in (200, 405)
            home = http.get("")
            assert home.status_code in (301, 302), home.text
            assert home.headers["location"].startswith(f"/sessions/{session['id']}/"), home.headers
            lab = http.get("lab")
            assert lab.status_code == 200 and "JupyterLab" in lab.text
            assert f'"baseUrl": "/sessions/{session["id"]}/"' in lab.text
            seen += [status.text, saved.text, home.text, lab.text, str(lab.headers)]
            seen += [str(answer.headers) for answer in (status, saved, home)]
            kernel = http.post("api/kernels", json={"name": "python3"})
            assert kernel.status_code == 201, kernel.text
            channels = f"{url.replace('http', 'ws', 1)}api/kernels/{kernel.json()['id']}/channels"
            socket = websocket.create_connection(
                channels,
                timeout=60,
                header=[f"{key}: {value}" for key, value in credentials(alice).items()],
                subprotocols=["v1.kernel.websocket.jupyter.org"],
            )
            try:
                assert socket.getsubprotocol() == "v1.kernel.websocket.jupyter.org"
            finally:
                socket.close()
            plain = websocket.create_connection(
                channels, timeout=60, header=[f"Authorization: {alice.headers['authorization']}"]
            )
            try:
                printed = execute(plain, "import os; print(6 * 7, os.getcwd())", 60)
            finally:
                plain.close()
            assert printed.startswith("42 "), printed
            seen.append(printed)
        assert all(token not in text for text in seen), "the session's token reached the user"

        bob = as_user(server, user_token(server, "bob", "ops"))
        assert bob.get(f"/sessions/{session['id']}/api/status").status_code == 404
        admin = server.client.get(f"/sessions/{session['id']}/api/status")
        assert admin.status_code == 403 and "owner" in admin.json()["message"], admin.text
        anonymous = httpx.get(f"{url}api/status")
        assert anonymous.status_code == 401, anonymous.text
        sockets = url.replace("http", "ws", 1)
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(f"{sockets}api/events/subscribe")
        assert refused.value.status_code == 401
        with pytest.raises(websocket.WebSocketBadStatusException) as unknown:
            websocket.create_connection(
                f"{sockets}api/kernels/{uuid.uuid4()}/channels",
                header=[f"Authorization: {alice.headers['authorization']}"],
            )
        assert unknown.value.status_code == 404, "the session server's own refusal"
        cookie = f"Cookie: nbplane_token={alice.headers['authorization'].split()[1]}"
        with pytest.raises(websocket.WebSocketBadStatusException) as elsewhere:
            websocket.create_connection(
                f"{sockets}api/events/subscribe", header=[cookie], origin="http://evil.example"
            )
        assert elsewhere.value.status_code == 403, "a signed-in browser's socket from elsewhere"
        events = websocket.create_connection(
            f"{sockets}api/events/subscribe", header=[cookie], origin=server.url
        )
        events.close()

        assert alice.post(f"{SESSIONS}/{session['id']}/hibernate").status_code == 200
        asleep = alice.get(f"/sessions/{session['id']}/api/status")
        assert asleep.status_code == 409 and "hibernated" in asleep.json()["message"], asleep.text
        assert asleep.json()["field"] == "status"


def test_what_crosses_the_proxy(tmp_path: Path) -> None:
    """A session command that records what reaches it: the session's token is added, nbplane's
    credentials and hop-by-hop headers are not forwarded; its answers' cookies stay on its path,
    nbplane's cookie names and a service worker over nbplane's pages are refused; a server that
    died is a 502."""
    script = tmp_path / "echo-jupyter"
    script.write_text(f"#!{sys.executable}\n" + ECHO.read_text())
    script.chmod(0o755)
    store_url = f"sqlite:///{tmp_path / 'nbplane.db'}"
    with session_server(tmp_path, store_url, NBPLANE_SESSION_COMMAND=str(script)) as server:
        alice_token = user_token(server, "alice", "analytics")
        alice = as_user(server, alice_token)
        session = wait_status(alice, create(alice)["id"], "running", "failed")
        assert session["status"] == "running", session
        base = f"/sessions/{session['id']}/"
        token = session_token(server, session["id"])
        cookies = {"nbplane_token": alice_token, "_xsrf": "abc", "theirs": "kept"}
        echoed = alice.post(
            f"{base}echo/a%2Fb?x=1",
            content=b"body",
            headers={
                "Cookie": "; ".join(f"{key}={value}" for key, value in cookies.items()),
                "Connection": "keep-alive, X-Hop",
                "X-Hop": "dropped",
                "X-Nbplane-Csrf": "1",
                "Origin": "http://elsewhere.example",
                "Proxy-Authorization": "Basic secret",
                "X-Kept": "yes",
            },
        )
        assert echoed.status_code == 200, echoed.text
        got: dict[str, Any] = echoed.json()
        headers = {key.lower(): value for key, value in got["headers"].items()}
        assert got["path"] == f"{base}echo/a%2Fb?x=1" and got["body"] == "body"
        assert headers["authorization"] == f"token {token}", "the session's own token, added"
        assert alice_token not in json.dumps(got), "nbplane's token never reaches the session"
        assert headers["cookie"] == "_xsrf=abc; theirs=kept"
        for name in ("x-hop", "x-nbplane-csrf", "origin", "proxy-authorization"):
            assert name not in headers, name
        assert headers["x-kept"] == "yes"

        answer = alice.get(f"{base}answer", follow_redirects=False)
        assert answer.headers["location"] == f"{base}lab", "the server's own address is hidden"
        assert "service-worker-allowed" not in answer.headers
        assert answer.headers.get_list("set-cookie") == [
            f"_xsrf=1; Path={base}",
            f"wide=1; Path={base}",
            f"scoped=1; Path={base}lab",
        ]

        signed_in = httpx.Client(base_url=server.url, cookies={"nbplane_token": alice_token})
        with signed_in:
            assert signed_in.get(f"{base}echo").status_code == 200, "the sign-in opens it"
            refused = signed_in.post(f"{base}echo", content=b"x")
            assert refused.status_code == 403 and refused.json()["field"] == "x-xsrftoken"
            marked = signed_in.post(f"{base}echo", content=b"x", headers={"X-XSRFToken": "abc"})
            assert marked.status_code == 200, marked.text

        kill_server(server, session["id"])
        dead = alice.get(f"{base}echo")
        if dead.status_code != 409:  # unless nbplane noticed first
            assert dead.status_code == 502, dead.text
            assert "did not answer" in dead.json()["message"]
