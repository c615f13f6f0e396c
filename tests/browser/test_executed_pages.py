"""A failed notebook-API execution's page (``/html``) in Chromium: it opens with what failed
and why, its link reaches the failing cell, the parameters show as papermill's cell, and an
error text made of markup stays text. The page is rendered in-process by the functions the
route calls; the screenshot goes to ``docs/screenshots``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import nbformat
from playwright.sync_api import Page, expect

from nbplane.apis.engines.base import PARAMETERS_TAG
from nbplane.apis.models import DescribeExecution, ExecutionStatus
from nbplane.apis.parameters import parameters_display
from nbplane.apis.service import execution_failure
from nbplane.notebooks.pages import notebook_page

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
EVALUE = "no rows for region <img src=x onerror=\"document.title='pwned'\">"


def failed_page() -> str:
    parameters = {"region": "emea", "limit": 3, "dry_run": False}
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Sales report\nTotals per region."),
        nbformat.v4.new_code_cell(
            "region = 'us'\nlimit = 10\ndry_run = True", metadata={"tags": ["parameters"]}
        ),
        nbformat.v4.new_code_cell(
            parameters_display(parameters, {}), metadata={"tags": [PARAMETERS_TAG]}
        ),
        nbformat.v4.new_code_cell("rows = load(region, limit)\nif not rows:\n    raise ..."),
    ]
    notebook.cells[3].outputs = [
        nbformat.v4.new_output(
            "error",
            ename="LookupError",
            evalue=EVALUE,
            traceback=["\x1b[31mLookupError\x1b[0m: " + EVALUE],
        )
    ]
    record = DescribeExecution(
        id="e1",
        notebook="sales_report",
        notebook_version="v1",
        parameters=parameters,
        status=ExecutionStatus.FAILED,
        engine="isolated",
        timeout=60,
        retries=0,
        attempts=1,
        created_at=datetime.now(UTC),
        reason=f"exception in cell 4: LookupError: {EVALUE}",
        error={"reason": "exception", "cell": 3, "ename": "LookupError", "evalue": EVALUE},
    )
    return notebook_page(notebook, execution_failure(record, notebook.cells), "sales_report")


def test_a_failed_executions_page_opens_with_what_failed(page: Page) -> None:
    page.route("**/*", lambda route: route.abort("internetdisconnected"))  # no CDN here
    page.set_content(failed_page(), wait_until="domcontentloaded")
    block = page.locator(".nbplane-failure")
    expect(block).to_be_visible()
    expect(block).to_contain_text("Failed at cell 4 of 4")
    expect(block).to_contain_text(f"LookupError: {EVALUE}")  # shown as text, not markup
    assert page.locator("img").count() == 0 and page.title() == "sales_report"
    box = block.bounding_box()
    first_cell = page.locator(".jp-Cell").first.bounding_box()
    assert box is not None and first_cell is not None and box["y"] < first_cell["y"]
    injected = page.locator(f".celltag_{PARAMETERS_TAG}")
    expect(injected).to_have_count(1)
    expect(injected).to_contain_text('region = "emea"')
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.screenshot(path=str(SCREENSHOTS / "api-execution-failed-html.png"))
    block.get_by_role("link").click()
    assert page.evaluate("location.hash").startswith("#cell-id=")
