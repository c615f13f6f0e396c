"""Loops once per cluster, with real processes: a web server and two ``nbplane serve --role
control`` replicas on loopback share a database (PostgreSQL when configured, else a SQLite
file) and a job scheduled every few seconds. The replica holding the lease is SIGKILLed (no
release): the other takes the lease within the lease's duration and its scheduler starts the
due time the dead one left, then the next ones on time. No due time runs twice, and none is
lost: the ones that fell due while no replica held the lease run once, late, as the scheduler
does after any outage. (A replica stopping cleanly hands over at once: tests/integration/
test_roles.py.)"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from nbplane._time import now
from nbplane.platform.lease import CONTROL_LEASE
from nbplane.store import Store, open_store
from tests.conftest import POSTGRES_URL, database_url
from tests.integration.server_fixture import Server, admin_token, free_port, stop, wait_healthy
from tests.integration.test_control import JOB, deploy, job_archive

PERIOD = 3
"""Seconds between the job's due times."""
DURATION, RENEW = 8.0, 2.0
"""The default lease settings: what the figure printed is for."""


@pytest.fixture
def shared_url(tmp_path: Path) -> Iterator[str]:
    if POSTGRES_URL:
        with database_url("postgresql", tmp_path) as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'nbplane.db'}"


@contextmanager
def servers(tmp_path: Path, url: str, *roles: str) -> Iterator[list[Server]]:
    """``nbplane serve --role ROLE`` for each role, started side by side; the control ones send
    their jobs to the first (web) one."""
    token = admin_token(url, f"takeover-{uuid.uuid4().hex[:8]}")
    tmp_path.mkdir(exist_ok=True)
    ports = [free_port() for _ in roles]
    environment = {
        **os.environ,
        "NBPLANE_HOME": str(tmp_path / "home"),
        "NBPLANE_STORE_URL": url,
        "NBPLANE_JOB_SERVER_URL": f"http://127.0.0.1:{ports[0]}",
        "NBPLANE_LEASE_DURATION_SECONDS": str(DURATION),
        "NBPLANE_LEASE_RENEW_SECONDS": str(RENEW),
    }
    started = []
    with ExitStack() as stack:
        for role, port in zip(roles, ports, strict=True):
            args = [sys.executable, "-m", "nbplane", "serve", "--role", role]
            args += ["--port", str(port), "--workers", "0"]
            log = tmp_path / f"{role}-{port}.log"
            with log.open("w") as output:
                process = subprocess.Popen(
                    args, env=environment, stdout=output, stderr=subprocess.STDOUT, text=True
                )
            server = Server(f"http://127.0.0.1:{port}", token, process, environment, args, log)
            stack.callback(stop, process)
            stack.callback(server.client.close)
            started.append(server)
        for server in started:
            wait_healthy(server)
        yield started


def holder(store: Store) -> str | None:
    return store.leases.holder(CONTROL_LEASE, now())


def pid_of(name: str) -> int:
    return int(name.split(":")[1])


def until(condition: object, seconds: float, what: str) -> float:
    began = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - began < seconds, f"{what}: not in {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - began


def due_times(web: Server) -> list[datetime]:
    items = web.client.get(f"{JOB}/executions", params={"limit": 100}).json()["items"]
    return sorted(datetime.fromisoformat(item["scheduled_for"]) for item in items)


def test_another_replica_takes_the_loops_over_when_the_holder_dies(
    tmp_path: Path, shared_url: str
) -> None:
    store = open_store(shared_url)
    try:
        with servers(tmp_path, shared_url, "web", "control", "control") as started:
            web, controls = started[0], {server.process.pid: server for server in started[1:]}
            held = holder(store)
            assert held is not None and pid_of(held) in controls, "one control replica holds it"
            deploy(web, job_archive(tmp_path, "print('tick')"), schedule=f"*/{PERIOD} * * * * *")
            until(lambda: len(due_times(web)) >= 1, 20, "a scheduled run")

            dying = controls.pop(pid_of(held))
            dying.process.send_signal(signal.SIGKILL)
            killed, killed_at = time.monotonic(), now()
            dying.process.wait()
            before = [due for due in due_times(web) if due <= killed_at]
            lease_taken = until(lambda: holder(store) not in (None, held), 15, "lease taken over")
            taker = holder(store)
            assert taker is not None and pid_of(taker) in controls
            pending = before[-1] + timedelta(seconds=PERIOD)  # the first due time it left
            until(lambda: pending in due_times(web), 10, "the due time left by the dead holder")
            loops_taken = time.monotonic() - killed
            print(
                f"\ntakeover after SIGKILL (lease {DURATION:g} s, renewed every {RENEW:g} s): "
                f"lease held by another replica after {lease_taken:.1f} s, its scheduler "
                f"started the pending run after {loops_taken:.1f} s"
            )
            assert lease_taken <= DURATION + RENEW + 1

            later = due_times(web)[-1]
            until(
                lambda: due_times(web)[-1] >= later + timedelta(seconds=PERIOD),
                PERIOD + 5,
                "the next due time, on time",
            )
            web.client.patch(f"{JOB}/deployment", json={"enabled": False})
            due = due_times(web)
    finally:
        store.close()
    assert len(set(due)) == len(due), f"a due time ran twice: {due}"
    steps = [(b - a).total_seconds() for a, b in itertools.pairwise(due)]
    assert all(step % PERIOD == 0 for step in steps), steps
    # due times that fell while no replica held the lease ran once, late, as one run (the
    # scheduler's rule after any outage); everywhere else every due time ran
    gaps = [step for step in steps if step > PERIOD]
    assert len(gaps) <= 1 and all(step <= DURATION + RENEW + 2 * PERIOD for step in gaps), steps
    assert pending in due
