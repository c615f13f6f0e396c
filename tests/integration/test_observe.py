"""Operators' view of a server: readiness with named checks (a database that does not answer,
a schema behind head, a stalled worker), the Prometheus metrics after real requests, and the
log flags of a real ``nbplane serve`` (JSON lines with an access line per request, the level
honoured). In-process apps on a real database; the log test runs the real command."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from nbplane.server import observe
from nbplane.server.app import ServerConfig, create_app, worker_check
from nbplane.server.observe import ReadinessCheck
from nbplane.store.engine import SCHEMA_HEAD
from tests.conftest import in_process_store
from tests.integration.api_notebooks import write_all
from tests.integration.server_fixture import running_server

TEAM = "sales"
UNREACHABLE = "postgresql+psycopg://nbplane:hunter2@127.0.0.1:1/nbplane"
"""A database that refuses connections: port 1 on loopback."""


@dataclass
class Served:
    app: FastAPI
    store: Any
    client: httpx.AsyncClient
    token: str

    def as_alice(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


Steps = Callable[[Served], Awaitable[None]]


def serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, steps: Steps) -> None:
    """``steps`` against an app on ``url`` (its lifespan run, no worker, no loops)."""

    @asynccontextmanager
    async def running() -> AsyncIterator[Served]:
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        notebooks = tmp_path / "notebooks"
        notebooks.mkdir(exist_ok=True)
        write_all(notebooks)
        store_url, store, tokens = in_process_store(monkeypatch, url, home, TEAM)
        app = create_app(
            ServerConfig(
                notebooks_dir=notebooks,
                store_url=store_url,
                cache_dir=home / "cache",
                run_worker=False,
                run_control=False,
            )
        )
        try:
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://test"
                ) as client,
            ):
                yield Served(app, store, client, tokens["member"])
        finally:
            store.close()

    async def main() -> None:
        async with running() as served:
            await steps(served)

    asyncio.run(main())


def database_goes_away(served: Served) -> None:
    """The app's store now reaches a database that refuses connections."""
    store = served.app.state.store
    store.engine.dispose()
    store.engine = create_engine(UNREACHABLE)


def test_ready_names_a_database_that_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    async def steps(served: Served) -> None:
        healthy = await served.client.get("/health/ready")
        assert healthy.status_code == 200, healthy.text
        assert set(healthy.json()["checks"]) == {"database", "schema"}
        database_goes_away(served)
        down = await served.client.get("/health/ready")
        assert down.status_code == 503, down.text
        body = down.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["database"]["ok"] is False
        assert "OperationalError" in body["checks"]["database"]["detail"]
        assert "127.0.0.1" not in down.text and "hunter2" not in down.text
        live = await served.client.get("/health/live")  # alive all the same: not restarted
        assert live.status_code == 200 and live.json() == {"status": "ok"}
        assert (await served.client.get("/health")).json() == {"status": "ok"}

    serve(tmp_path, monkeypatch, store_url, steps)


def test_ready_says_the_schema_is_behind_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    async def steps(served: Served) -> None:
        with served.store.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0008'"))
        answer = await served.client.get("/health/ready")
        assert answer.status_code == 503, answer.text
        checks = answer.json()["checks"]
        assert checks["database"]["ok"] is True
        assert checks["schema"] == {
            "ok": False,
            "detail": f"at 0008, head is {SCHEMA_HEAD}: migrate it",
        }

    serve(tmp_path, monkeypatch, store_url, steps)


def test_a_check_that_hangs_or_raises_fails_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other parts append their checks; one that does not answer in time, or raises, fails
    alone and by its name, without its error's text."""
    monkeypatch.setattr(observe, "CHECK_SECONDS", 0.2)

    def hangs() -> tuple[bool, str]:
        time.sleep(1)
        return True, "too late"

    def raises() -> tuple[bool, str]:
        raise RuntimeError("secret-ish detail")

    async def steps(served: Served) -> None:
        served.app.state.readiness.append(ReadinessCheck("slow", hangs))
        served.app.state.readiness.append(ReadinessCheck("broken", raises))
        answer = await served.client.get("/health/ready")
        assert answer.status_code == 503
        checks = answer.json()["checks"]
        assert checks["database"]["ok"] and checks["schema"]["ok"]
        assert checks["slow"] == {"ok": False, "detail": "no answer within 0.2 s"}
        assert checks["broken"] == {"ok": False, "detail": "failed (RuntimeError; see the log)"}

    serve(tmp_path, monkeypatch, "sqlite", steps)


def test_worker_check_fails_when_its_loop_stalls() -> None:
    worker: Any = SimpleNamespace(last_beat=time.monotonic(), stale_after=timedelta(seconds=15))
    check = worker_check(worker)
    assert check.name == "api_worker" and check.check()[0] is True
    worker.last_beat -= 60
    ok, detail = check.check()
    assert not ok and detail.startswith("stalled: last looked for work 60 s ago")


def samples(exposition: str) -> dict[str, list[Any]]:
    """Each metric family's samples, by family name, parsed as Prometheus would."""
    return {family.name: family.samples for family in text_string_to_metric_families(exposition)}


def value(found: dict[str, list[Any]], sample: str, **labels: str) -> float:
    family = sample.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    for candidate in found.get(family, []):
        if candidate.name == sample and candidate.labels == labels:
            return float(candidate.value)
    raise AssertionError(f"no {sample}{labels} in {found.get(family)}")


def test_metrics_count_requests_by_route_template_and_read_the_queue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    async def steps(served: Served) -> None:
        alice = served.as_alice()
        for _ in range(2):
            queued = await served.client.post(
                "/api/v1/notebooks/double/executions", json={"parameters": {"x": 1}}, headers=alice
            )
            assert queued.status_code == 201, queued.text
        missing = await served.client.get("/api/v1/executions/no-such-id", headers=alice)
        assert missing.status_code == 404
        assert (await served.client.get("/api/v1/me")).status_code == 401
        assert (await served.client.get("/no/such/page")).status_code == 404
        scraped = await served.client.get("/metrics")
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        found = samples(scraped.text)
        assert all(name.startswith("nbplane_") for name in found)
        route = "/api/v1/notebooks/{name}/executions"
        assert (
            value(found, "nbplane_http_requests_total", method="POST", route=route, status="201")
            == 2
        )
        execution = "/api/v1/executions/{execution_id}"
        assert (
            value(found, "nbplane_http_requests_total", method="GET", route=execution, status="404")
            == 1
        )
        assert (
            value(
                found, "nbplane_http_requests_total", method="GET", route="/api/v1/me", status="401"
            )
            == 1
        )
        assert (
            value(
                found,
                "nbplane_http_requests_total",
                method="GET",
                route="(unmatched)",
                status="404",
            )
            == 1
        )
        assert (
            value(
                found,
                "nbplane_http_request_duration_seconds_count",
                method="GET",
                route="/api/v1/me",
                status="401",
            )
            == 1
        )
        assert value(found, "nbplane_api_queue_depth") == 2
        assert value(found, "nbplane_sessions", status="running") == 0
        assert "no-such-id" not in scraped.text and "double" not in scraped.text
        assert "/no/such/page" not in scraped.text
        for name in (
            "nbplane_api_executions",
            "nbplane_job_executions",
            "nbplane_schedule_lag_seconds",
            "nbplane_session_start_seconds",
            "nbplane_api_execution_duration_seconds",
        ):
            assert name in found, name

    serve(tmp_path, monkeypatch, store_url, steps)


def test_metrics_answer_while_the_database_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gauges read from the store are left out; the counters still answer."""

    async def steps(served: Served) -> None:
        database_goes_away(served)
        scraped = await served.client.get("/metrics")
        assert scraped.status_code == 200
        found = samples(scraped.text)
        assert "nbplane_api_queue_depth" not in found and "nbplane_http_requests" in found

    serve(tmp_path, monkeypatch, "sqlite", steps)


def test_serve_logs_json_lines_with_an_access_line_at_the_level_asked(tmp_path: Path) -> None:
    """``--log-format json --log-level info``, over ``NBPLANE_LOG_LEVEL=error``: every stderr
    line is a JSON object; a request's access line has its fields, while the readiness probes,
    logged at debug, are left out (the level is honoured)."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    home = tmp_path / "home"
    flags = ("--workers", "0", "--single-tenant", "--log-format", "json", "--log-level", "info")
    with running_server(
        notebooks,
        home,
        f"sqlite:///{home / 'nbplane.db'}",
        *flags,
        environment={"NBPLANE_LOG_LEVEL": "error"},
    ) as server:
        assert server.client.get("/api/v1/me").status_code == 200
        assert httpx.get(f"{server.url}/api/v1/nope").status_code == 404
        assert httpx.get(f"{server.url}/health/ready").status_code == 200
    lines = [line for line in server.log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # each line an object, else this raises
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
    assert any(record["logger"] == "nbplane.server" for record in records)  # start-up lines
    access = {record["path"]: record for record in records if record["logger"] == "nbplane.access"}
    me = access["/api/v1/me"]
    assert me["method"] == "GET" and me["status"] == 200 and me["user"] == "admin"
    assert me["client"].startswith("127.0.0.1:") and me["duration_ms"] >= 0
    assert me["message"].endswith(f'"GET /api/v1/me" 200 {me["duration_ms"]:.1f} ms')
    assert access["/api/v1/nope"]["status"] == 404 and access["/api/v1/nope"]["user"] is None
    assert "/health/ready" not in access and "/health" not in access


def test_an_app_started_twice_keeps_one_set_of_checks_and_gauges(tmp_path: Path) -> None:
    """Tests start one app's lifespan more than once: each adds its checks and store gauges
    and takes them away at its end, so neither doubles nor reads a closed store."""
    app = create_app(
        ServerConfig(
            notebooks_dir=tmp_path,
            store_url=f"sqlite:///{tmp_path / 'nbplane.db'}",
            cache_dir=tmp_path / "cache",
            run_worker=False,
            run_control=False,
        )
    )

    async def twice() -> None:
        for _ in range(2):
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://test"
                ) as client,
            ):
                assert [check.name for check in app.state.readiness] == ["database", "schema"]
                found = samples((await client.get("/metrics")).text)  # parses: no duplicates
                assert value(found, "nbplane_api_queue_depth") == 0
        assert app.state.readiness == []
        assert "nbplane_api_queue_depth" not in samples(
            generate_latest(app.state.metrics.registry).decode()
        )

    asyncio.run(twice())
