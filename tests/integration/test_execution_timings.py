"""Where an execution's time went, over HTTP: its ``timings`` and the ``Server-Timing`` header of
the answers that carry it final (``?wait=`` on /api/v1 and jupyrest's POST), on a server run
in-process with its worker on the fake engine (no kernel)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from nbplane.apis import worker as worker_module
from nbplane.apis.models import HOPS
from nbplane.server.app import ServerConfig, create_app
from nbplane.testing import Plan
from tests.integration.api_notebooks import TimedEngine, write_all


def hops(response: httpx.Response) -> list[str]:
    """The names of the ``Server-Timing`` header, each checked to carry a duration."""
    names = []
    for metric in response.headers["Server-Timing"].split(", "):
        name, duration = metric.split(";dur=")
        assert float(duration) >= 0, metric
        names.append(name)
    return names


def test_a_waited_for_execution_says_where_its_time_went(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = TimedEngine(default=Plan.succeed({"y": 4}))
    shared = SimpleNamespace(for_worker=lambda pool_size: engine)
    monkeypatch.setattr(worker_module, "ENGINES", SimpleNamespace(load=lambda name: shared))
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_all(notebooks)
    config = ServerConfig(
        notebooks_dir=notebooks,
        store_url=f"sqlite:///{tmp_path / 'nb.db'}",
        cache_dir=tmp_path / "cache",
        auth=False,
        run_control=False,
    )
    app = create_app(config)
    stored = [hop for hop in HOPS if hop != "record"]

    async def main() -> None:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://nbplane"
            ) as client,
        ):
            submit = "/api/v1/notebooks/double/executions"
            waited = await client.post(submit, params={"wait": 10}, json={"parameters": {"x": 2}})
            assert waited.status_code == 201, waited.text
            execution = waited.json()
            assert execution["status"] == "completed" and list(execution["timings"]) == stored
            assert hops(waited) == [*HOPS, "total"]  # it ended during this request: record

            path = f"/api/v1/executions/{execution['id']}"
            read = await client.get(path, params={"wait": 5})
            assert read.json()["timings"] == execution["timings"]
            assert hops(read) == [*stored, "total"]  # it had ended before: no record
            assert "Server-Timing" not in (await client.get(path)).headers

            started = await client.post(submit, json={"parameters": {"x": 3}})
            assert "Server-Timing" not in started.headers  # not final: nothing to say yet

            jupyrest = await client.post(
                "/api/NotebookExecutions",
                params={"wait": 10},
                json={"notebook": "double", "parameters": {"x": 1}},
            )
            assert jupyrest.json()["status"] == "COMPLETED"
            assert hops(jupyrest) == [*HOPS, "total"]

    asyncio.run(main())
