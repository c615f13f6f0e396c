"""Time a session from create to the first kernel reply, through nbplane's proxy
(``/sessions/{id}/``, what a browser uses) and directly at the session server's own address
with its token (what nbplane keeps to itself), on one ``nbplane serve`` with the local launcher.

Each round: ``POST /api/v1/sessions``, ``GET /api/v1/sessions/{id}`` every 20 ms until
``ready``, then start a kernel (``POST api/kernels``), open its WebSocket
(``api/kernels/{id}/channels``, Jupyter's JSON protocol, as JupyterLab speaks it) and send
``execute_request``; the time ends at its ``execute_reply``. The session is then deleted and
the pool refilled. The two ways take turns, so a change in machine load hits both alike; the
load average is printed before and after. ``--pool 0`` starts every server on demand.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from _common import percentile, sqlite_url
from control_plane import BenchError, Plane, start_plane
from websockets.sync.client import connect

POLL_SECONDS = 0.02


def create_ready(plane: Plane, client: httpx.Client, timeout: float) -> dict[str, Any]:
    made = client.post("/api/v1/sessions", json={})
    if made.status_code != 201:
        raise BenchError(f"create answered HTTP {made.status_code}: {made.text[:500]}")
    deadline = time.monotonic() + timeout
    while True:
        session: dict[str, Any] = client.get(f"/api/v1/sessions/{made.json()['id']}").json()
        if session.get("ready"):
            return session
        if session.get("status") == "failed" or time.monotonic() > deadline:
            raise BenchError(f"session {session.get('status')}: {session.get('reason')}")
        time.sleep(POLL_SECONDS)


def direct_address(plane: Plane, session_id: str) -> tuple[str, str]:
    """The session server's own address and token, from nbplane's store."""
    from nbplane.platform.secrets import SecretBox
    from nbplane.settings import Settings
    from nbplane.store import open_store

    store = open_store(plane.store_url)
    try:
        record = store.sessions.get(session_id)
    finally:
        store.close()
    token = SecretBox(Settings(home=plane.home)).open(record.secrets)["token"]
    assert record.url is not None
    return record.url, str(token)


def first_reply(url: str, headers: dict[str, str], timeout: float) -> None:
    """A kernel started at ``url``; returns at the reply to its first execute_request."""
    with httpx.Client(base_url=url, headers=headers, timeout=timeout, trust_env=False) as http:
        kernel = http.post("api/kernels", json={"name": "python3"})
        if kernel.status_code != 201:
            raise BenchError(f"POST {url}api/kernels: {kernel.status_code} {kernel.text[:300]}")
        channels = url.replace("http", "ws", 1) + f"api/kernels/{kernel.json()['id']}/channels"
        message_id = uuid.uuid4().hex
        with connect(channels, additional_headers=headers, open_timeout=timeout) as socket:
            socket.send(
                json.dumps(
                    {
                        "header": {
                            "msg_id": message_id,
                            "msg_type": "execute_request",
                            "username": "bench",
                            "session": uuid.uuid4().hex,
                            "version": "5.3",
                            "date": "",
                        },
                        "parent_header": {},
                        "metadata": {},
                        "channel": "shell",
                        "buffers": [],
                        "content": {"code": "1 + 1", "silent": False, "allow_stdin": False},
                    }
                )
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                message = json.loads(socket.recv(timeout=timeout))
                if (
                    message.get("msg_type") == "execute_reply"
                    and message.get("parent_header", {}).get("msg_id") == message_id
                ):
                    return
        raise BenchError(f"no execute_reply from {url} in {timeout:g} s")


def delete(client: httpx.Client, session_id: str, timeout: float) -> None:
    client.delete(f"/api/v1/sessions/{session_id}", params={"purge": True})
    deadline = time.monotonic() + timeout
    while client.get(f"/api/v1/sessions/{session_id}").status_code != 404:
        if time.monotonic() > deadline:
            raise BenchError(f"session {session_id} not deleted")
        time.sleep(0.1)


def wait_pool(plane: Plane, size: int, timeout: float) -> None:
    from sessions_vs_jupyterhub import wait_for_pool

    if size:
        wait_for_pool("pool", plane.servers[0].pid, plane.home, size, timeout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="timed rounds per way (default 8)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--pool", type=int, default=1, help="NBPLANE_SESSION_POOL_SIZE")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per step")
    args = parser.parse_args()
    environment = {"NBPLANE_SESSION_POOL_SIZE": str(args.pool)}
    if os.environ.get("PYTHONPATH"):  # a checkout's own sources, for the server too
        environment["PYTHONPATH"] = os.environ["PYTHONPATH"]
    before = os.getloadavg()
    timings: dict[str, list[float]] = {"through nbplane": [], "direct": []}
    with tempfile.TemporaryDirectory(prefix="nbplane-bench-proxy-") as directory:
        root = Path(directory)
        plane = start_plane(
            root, "proxy", sqlite_url(root / "nbplane.db"), 1, args.timeout, environment
        )
        try:
            client = plane.client(timeout=args.timeout)
            wait_pool(plane, args.pool, args.timeout)
            for round_number in range(args.warmup + args.runs):
                for way in list(timings) if round_number % 2 else list(reversed(timings)):
                    started = time.perf_counter()
                    session = create_ready(plane, client, args.timeout)
                    if way == "direct":
                        url, token = direct_address(plane, session["id"])
                        headers = {"Authorization": f"token {token}"}
                    else:
                        url = session["url"]
                        headers = {"Authorization": f"Bearer {plane.token}"}
                    first_reply(url, headers, args.timeout)
                    elapsed = time.perf_counter() - started
                    if round_number >= args.warmup:
                        timings[way].append(elapsed)
                    delete(client, session["id"], args.timeout)
                    wait_pool(plane, args.pool, args.timeout)
            client.close()
        finally:
            plane.stop()
    after = os.getloadavg()
    print(f"create -> first kernel reply, local launcher, pool {args.pool}, {args.runs} runs")
    for way, seconds in timings.items():
        print(
            f"  {way:16} median {percentile(seconds, 0.5):.3f} s  "
            f"p90 {percentile(seconds, 0.9):.3f} s  min {min(seconds):.3f} s"
        )
    ratio = percentile(timings["through nbplane"], 0.5) / percentile(timings["direct"], 0.5)
    print(f"  ratio (medians)  {ratio:.2f}")
    print(f"  load average     before {before[0]:.2f}, after {after[0]:.2f} (1 min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
