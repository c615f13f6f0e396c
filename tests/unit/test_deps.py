"""Routes take their services and caller from server/deps.py, so an app with nothing on its
state (no lifespan ran) answers from whatever the dependencies are overridden with."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from nbplane.auth.models import DescribeCaller
from nbplane.server import deps
from nbplane.server.app import ServerConfig, create_app

ADA = DescribeCaller(user="ada", admin=False, teams=["data"], token="laptop")


class FakeCatalog:
    def offered(self, caller: DescribeCaller) -> list[Any]:
        assert caller == ADA
        return []


class FakeExecutions:
    catalog = FakeCatalog()


def test_routes_use_the_overridden_dependencies(tmp_path: Path) -> None:
    app = create_app(
        ServerConfig(notebooks_dir=tmp_path, store_url="sqlite://", cache_dir=tmp_path)
    )
    app.dependency_overrides[deps.caller] = lambda: ADA
    app.dependency_overrides[deps.execution_service] = FakeExecutions

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)  # runs no lifespan: nothing on app.state
        async with httpx.AsyncClient(transport=transport, base_url="http://nbplane") as client:
            assert (await client.get("/api/v1/me")).json()["user"] == "ada"
            assert (await client.get("/api/v1/notebooks")).json() == []

    asyncio.run(main())
