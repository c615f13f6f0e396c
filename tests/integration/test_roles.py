"""``nbplane serve --role``, in-process on a real store: the worker and control roles answer
only the health routes; web runs no loops; two control replicas run the loops one at a time,
both ready (one holding the lease, one standing by), and one that stops cleanly hands the lease
over at the other's next try. (Killed replicas, in real processes:
tests/integration/test_takeover.py.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from nbplane._time import now
from nbplane.platform.lease import CONTROL_LEASE, LeasedLoops
from nbplane.server.app import ServerConfig, create_app
from nbplane.settings import get_settings
from nbplane.store import open_store

DURATION, RENEW = 4.0, 1.0
"""Short, but with room for a loaded machine: a holder whose renewals come late loses it."""


@pytest.fixture(autouse=True)
def quick_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "NBPLANE_LEASE_DURATION_SECONDS": str(DURATION),
        "NBPLANE_LEASE_RENEW_SECONDS": str(RENEW),
        "NBPLANE_SESSION_POOL_SIZE": "0",
        "NBPLANE_SESSION_COMMAND": "false",
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()


def app_of(tmp_path: Path, store_url: str, role: str) -> FastAPI:
    return create_app(
        ServerConfig(
            notebooks_dir=tmp_path,
            store_url=store_url,
            cache_dir=tmp_path / "cache",
            run_worker=role in ("all", "worker"),
            run_control=role in ("all", "control"),
            run_web=role in ("all", "web"),
        )
    )


@pytest.mark.parametrize("role", ["worker", "control"])
def test_worker_and_control_roles_answer_only_health(tmp_path: Path, role: str) -> None:
    async def main() -> None:
        for serving, app in (
            (False, app_of(tmp_path, "sqlite://", role)),
            (True, app_of(tmp_path, "sqlite://", "web")),
        ):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # routing only
            async with httpx.AsyncClient(transport=transport, base_url="http://n") as client:
                assert (await client.get("/health")).status_code == 200
                for path in ("/api/v1/me", "/openapi.json", "/docs", "/"):
                    status = (await client.get(path)).status_code
                    assert (status != 404) == serving, (role, path, status)

    asyncio.run(main())


def controls(app: FastAPI) -> LeasedLoops | None:
    found: LeasedLoops | None = app.state.control
    return found


def test_one_control_replica_runs_the_loops_and_hands_them_over_when_stopped(
    tmp_path: Path, store_url: str
) -> None:
    store = open_store(store_url)

    def holder() -> str | None:
        return store.leases.holder(CONTROL_LEASE, now())

    async def main() -> float:
        web, first, second = (
            app_of(tmp_path, store_url, role) for role in ("web", "control", "control")
        )
        async with web.router.lifespan_context(web):
            assert controls(web) is None and holder() is None, "web runs no loops"
            first_lifespan = first.router.lifespan_context(first)
            await first_lifespan.__aenter__()
            running = True
            try:
                async with second.router.lifespan_context(second):
                    one, other = controls(first), controls(second)
                    assert one is not None and other is not None
                    assert one.holding and not other.holding
                    assert holder() == one.lease.holder
                    await asyncio.sleep(2 * RENEW)
                    assert one.holding and not other.holding and other.last_beat > 0
                    for app, says in ((first, "holds the lease"), (second, "standing by")):
                        transport = httpx.ASGITransport(app=app)
                        async with httpx.AsyncClient(
                            transport=transport, base_url="http://n"
                        ) as client:
                            answer = await client.get("/health/ready")
                        assert answer.status_code == 200, answer.text
                        check = answer.json()["checks"]["control"]
                        assert check["ok"] and check["detail"].startswith(says), check
                    stopped = time.monotonic()
                    running = False
                    await first_lifespan.__aexit__(None, None, None)
                    while not other.holding:
                        assert time.monotonic() - stopped < DURATION, "not handed over"
                        await asyncio.sleep(0.02)
                    handed = time.monotonic() - stopped
                    assert holder() == other.lease.holder
            finally:
                if running:
                    await first_lifespan.__aexit__(None, None, None)
        return handed

    try:
        handed = asyncio.run(main())
    finally:
        store.close()
    assert handed < DURATION - RENEW, "handed over at once, not when the lease expired"
