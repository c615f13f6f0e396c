"""Executions on a server started with --no-auth, in-process (httpx's ASGI transport; no worker,
so no kernel runs)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from nbplane.server.app import ServerConfig, create_app
from tests.integration.api_notebooks import write_all


def test_no_auth_callers_are_an_admin_that_owns_what_it_submits(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_all(notebooks)
    config = ServerConfig(
        notebooks_dir=notebooks,
        store_url=f"sqlite:///{tmp_path / 'nb.db'}",
        cache_dir=tmp_path / "cache",
        auth=False,
        run_worker=False,
        run_control=False,
    )
    app = create_app(config)

    async def main() -> None:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://nbplane"
            ) as client,
        ):
            queued = await client.post(
                "/api/v1/notebooks/double/executions", json={"parameters": {"x": 2}}
            )
            assert queued.status_code == 201, queued.text
            execution = queued.json()
            assert (execution["status"], execution["created_by"]) == ("queued", "local")
            mine = (await client.get("/api/v1/executions", params={"owner": "local"})).json()
            assert [item["id"] for item in mine["items"]] == [execution["id"]]
            other = (await client.get("/api/v1/executions", params={"owner": "else"})).json()
            assert other["total"] == 0
            path = f"/api/v1/executions/{execution['id']}"
            assert (await client.get(path)).json()["created_by"] == "local"
            cancelled = await client.post(f"{path}/cancel")
            assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"

    asyncio.run(main())
