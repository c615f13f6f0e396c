"""``/docs`` in a real Chromium against a real server on loopback: Swagger UI renders the
operations from the package's own copy, with every request the page makes going to the server
(none to a CDN or a font host; any other is refused, as without internet)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, Route, expect

from tests.integration.api_notebooks import write_all
from tests.integration.server_fixture import running_server


def test_docs_render_offline_from_the_server_alone(page: Page, tmp_path: Path) -> None:
    notebooks = tmp_path / "apis"
    notebooks.mkdir()
    write_all(notebooks)
    home = tmp_path / "home"
    with running_server(
        notebooks, home, f"sqlite:///{home / 'nbplane.db'}", "--workers", "0"
    ) as server:
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))

        def only_the_server(route: Route) -> None:
            if route.request.url.startswith(server.url + "/"):
                route.continue_()
            else:
                route.abort("internetdisconnected")

        page.route("**/*", only_the_server)
        page.goto(server.url + "/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("nbplane")
        ready = page.locator(".opblock-summary-path", has_text="/health/ready")
        expect(ready).to_be_visible()
        expect(
            page.locator(".opblock-summary-path", has_text="/api/v1/sessions").first
        ).to_be_visible()
        assert page.locator(".opblock").count() > 40
        expect(page.get_by_text("Unable to render this definition")).to_have_count(0)
        ready.click()  # an operation opens with its responses: 200 and 503 for readiness
        expect(page.locator(".opblock.is-open .responses-table").first).to_contain_text("503")
        page.screenshot(path=str(tmp_path / "docs.png"), full_page=True)
    assert (tmp_path / "docs.png").stat().st_size > 10_000
    outside = [url for url in asked if not url.startswith(server.url + "/")]
    assert outside == [], f"the page asked outside the server: {outside}"
    assert server.url + "/docs/assets/swagger-ui-bundle.js" in asked
    assert server.url + "/openapi.json" in asked
