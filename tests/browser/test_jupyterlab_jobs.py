"""nbplane's jobs in a real JupyterLab through a real Chromium: the jobs page (local run history
and deployed jobs, acted on from their rows), the Deploy dialog's time zone and arguments as
the server stores them, "Create job" from the file browser and the notebook toolbar, and
"Convert job to notebook". Same Lab as test_jupyterlab.py (its module-scoped fixture)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import Screenshot
from tests.browser.test_jupyterlab import (
    Lab,
    cells,
    dialog,
    lab,  # noqa: F401  (the module-scoped JupyterLab fixture)
    log_in,
    menu,
    notification,
    open_notebook,
)
from tests.conftest import write_notebook
from tests.integration.server_fixture import Server, running_server

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
"""The README's pictures of these features, refreshed when NBPLANE_UPDATE_DOCS_SCREENSHOT=1."""


def docs_screenshot(page: Page, name: str, target: Locator | None = None) -> None:
    if os.environ.get("NBPLANE_UPDATE_DOCS_SCREENSHOT") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (target or page).screenshot(path=str(SCREENSHOTS / name))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A real nbplane server on loopback (SQLite: what is tested here is the Lab side)."""
    notebooks = tmp_path / "apis"
    notebooks.mkdir()
    with running_server(notebooks, tmp_path / "home", f"sqlite:///{tmp_path / 's.db'}") as running:
        yield running


def run_locally(jupyter: Lab, directory: Path) -> None:
    """``nbplane job run`` in a terminal of this Jupyter root: what the local history lists."""
    subprocess.run(
        [sys.executable, "-m", "nbplane", "job", "run", str(directory)],
        env=jupyter.environment,
        capture_output=True,
        timeout=120,
        check=False,
    )


def browser_item(page: Page, name: str) -> Locator:
    """The file browser's entry of ``name`` (in the folder it shows)."""
    text = page.locator(".jp-DirListing-itemText", has_text=re.compile(f"^{re.escape(name)}$"))
    return page.locator(".jp-DirListing-item").filter(has=text)


def context_menu(page: Page, name: str, item: str) -> None:
    """Right-click ``name`` in the file browser, once selected (the listing may still grow
    with a folder just made), and choose ``item``."""
    entry = browser_item(page, name)
    entry.click()
    expect(entry).to_have_class(re.compile("jp-mod-selected"))
    entry.click(button="right")
    page.locator(".lm-Menu .lm-Menu-item:not(.lm-mod-hidden)", has_text=item).first.click()


def test_jobs_page_and_deploy_with_time_zone_and_arguments(
    lab: Lab,  # noqa: F811
    page: Page,
    server: Server,
    screenshot: Screenshot,
) -> None:
    job = lab.create_job("paged")
    failing = lab.root / "reports" / "nightly"
    failing.mkdir(parents=True)
    write_notebook(failing / "10_main.ipynb", ["x = 1", "raise ValueError('no rows today')"])
    run_locally(lab, job)
    run_locally(lab, failing)

    open_notebook(lab, page, "paged/10_hello.ipynb")
    log_in(page, server, "dora", "analytics")
    menu(page, "Deploy job…")
    form = dialog(page)
    form.locator("input[name=directory]").fill("paged")
    form.locator("input[name=schedule]").fill("0 6 * * *")
    # The browser's own time zone is the default; a name that is none is refused at its field.
    expect(form.locator("input[name=timezone]")).not_to_have_value("")
    form.locator("input[name=timezone]").fill("Mars/Olympus")
    form.get_by_role("button", name="Deploy").click()
    expect(form.locator(".nbplane-form-error")).to_contain_text("IANA time zone")
    expect(form.locator("input[name=timezone]")).to_have_attribute("aria-invalid", "true")
    form.locator("input[name=timezone]").fill("Europe/Paris")
    form.locator("textarea[name=arguments]").fill('["who"]')
    form.get_by_role("button", name="Deploy").click()
    expect(form.locator(".nbplane-form-error")).to_contain_text("arguments must be a JSON object")
    form.locator("textarea[name=arguments]").fill('{"who": "the page"}')
    docs_screenshot(page, "lab-deploy-dialog.png")
    form.get_by_role("button", name="Deploy").click()
    expect(notification(page, "Deployed analytics/paged")).to_be_visible(timeout=60_000)
    stored = server.client.get("/api/v1/teams/analytics/jobs/paged").json()["deployment"]
    assert stored["timezone"] == "Europe/Paris" and stored["arguments"] == {"who": "the page"}
    assert stored["schedule"] == "0 6 * * *" and stored["enabled"] is True

    # The side panel stays compact: the schedule under the name, the status never cut off.
    panel = page.locator("#nbplane-jobs-panel")
    compact = panel.locator("tr[data-job='analytics/paged']")
    expect(compact).to_contain_text("0 6 * * * (Europe/Paris)")
    badge, edge = compact.locator(".nbplane-badge").bounding_box(), panel.bounding_box()
    assert badge and edge and badge["x"] + badge["width"] <= edge["x"] + edge["width"]

    # The jobs page, full width (the side panel folded): the local runs first, with the
    # failing step of the failed one.
    panel.get_by_role("button", name="Open jobs page").click()
    page.locator(".jp-SideBar.jp-mod-right .lm-TabBar-tab.lm-mod-current").click()
    expect(panel).to_be_hidden()
    jobs = page.locator(".nbplane-jobs-page")
    history = jobs.locator(".nbplane-history-row")
    expect(history).to_have_count(2)
    broken = jobs.locator(".nbplane-history-row[data-directory='reports/nightly']")
    expect(broken.locator(".nbplane-badge")).to_have_text("failed")
    expect(broken.locator(".nbplane-failing-step")).to_contain_text("10_main.ipynb#2: ")
    expect(broken.locator(".nbplane-failing-step")).to_contain_text("no rows today")
    fine = jobs.locator(".nbplane-history-row[data-directory='paged']")
    expect(fine.locator(".nbplane-badge")).to_have_text("succeeded")
    docs_screenshot(page, "lab-jobs-page.png")
    # A row's action: its failing notebook opens, no path typed.
    broken.get_by_role("button", name="Open notebook").click()
    expect(page.locator(".lm-TabBar-tab.lm-mod-current", has_text="10_main.ipynb")).to_be_visible()

    # The deployed jobs, each with its schedule in its time zone; pause from the row.
    menu(page, "Jobs page")
    jobs.get_by_role("tab", name="Deployed jobs").click()
    row = jobs.locator(".nbplane-deployed tr[data-job='analytics/paged']")
    expect(row).to_contain_text("0 6 * * * (Europe/Paris)")
    expect(row.locator("td").nth(3)).to_have_text("yes")
    row.get_by_role("button", name="Pause").click()
    expect(row.locator("td").nth(3)).to_have_text("paused")
    assert (
        server.client.get("/api/v1/teams/analytics/jobs/paged").json()["deployment"]["enabled"]
        is False
    )
    screenshot("deployed")
    row.get_by_role("button", name="Resume").click()
    expect(row.locator("td").nth(3)).to_have_text("yes")
    # Details from the row: no dialog asking for team and job name.
    row.get_by_role("button", name="Details").click()
    details = page.locator(".nbplane-details").last
    expect(details).to_contain_text("0 6 * * * (Europe/Paris)")
    expect(details).to_contain_text('{"who":"the page"}')
    expect(dialog(page)).to_have_count(0)


def test_create_job_from_the_file_browser_and_the_toolbar_then_convert_one(
    lab: Lab,  # noqa: F811
    page: Page,
    screenshot: Screenshot,
) -> None:
    (lab.root / "area").mkdir()
    write_notebook(lab.root / "explore.ipynb", [("x = 2", []), ("print(x * 21)", [])])
    write_notebook(lab.root / "solo.ipynb", [("print('solo')", [])])
    vdk = lab.root / "vdkjob"
    vdk.mkdir()
    (vdk / "10_create.sql").write_text("CREATE TABLE seen (n INT)", encoding="utf-8")
    (vdk / "20_fill.py").write_text(
        "def run(job_input):\n    job_input.execute_query('INSERT INTO seen VALUES (1)')\n",
        encoding="utf-8",
    )
    lab.open(page, "create-from-browser")
    # The launcher offers the jobs page too.
    expect(page.locator(".jp-LauncherCard", has_text="nbplane jobs")).to_be_visible()

    # On a folder: a new job folder inside it.
    context_menu(page, "area", "Create job here…")
    form = dialog(page)
    expect(form.locator("input[name=directory]")).to_have_value("area")
    form.locator("input[name=name]").fill("fresh")
    form.get_by_role("button", name="Create").click()
    expect(cells(page)).to_have_count(5, timeout=60_000)
    assert (lab.root / "area" / "fresh" / "10_hello.ipynb").is_file()

    # On a notebook: a job from it, its code cells the steps.
    page.locator(".jp-BreadCrumbs-home").click()
    expect(browser_item(page, "area")).to_be_visible()
    notebook = browser_item(page, "explore.ipynb")
    notebook.click()
    expect(notebook).to_have_class(re.compile("jp-mod-selected"))
    notebook.click(button="right")
    item = page.locator(".lm-Menu .lm-Menu-item:not(.lm-mod-hidden)", has_text="Create job from")
    expect(item).to_be_visible()
    docs_screenshot(page, "lab-create-job.png")
    item.click()
    form = dialog(page)
    expect(form.locator("input[name=name]")).to_have_value("explore")
    form.get_by_role("button", name="Create").click()
    badges = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .nbplane-step-badge")
    expect(badges).to_have_text(["step 1", "step 2"], timeout=60_000)
    assert (lab.root / "explore" / "explore.ipynb").is_file()

    # The notebook toolbar: the open notebook gets a job.
    open_notebook(lab, page, "solo.ipynb")
    page.locator(
        ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Toolbar "
        "[data-command='nbplane:create-job-from-notebook']"
    ).click()
    form = dialog(page)
    expect(page.locator(".jp-Dialog-header")).to_contain_text("Create job from solo.ipynb")
    form.get_by_role("button", name="Create").click()
    expect(notification(page, "Created job solo")).to_be_visible()
    assert (lab.root / "solo" / "solo.ipynb").is_file()
    screenshot("toolbar")

    # Convert job to notebook, from the job folder's context menu: the notebook opens.
    page.locator(".jp-BreadCrumbs-home").click()
    expect(browser_item(page, "solo")).to_be_visible()
    context_menu(page, "vdkjob", "Convert job to notebook…")
    expect(notification(page, "2 steps in vdkjob-notebook/vdkjob.ipynb")).to_be_visible()
    expect(badges).to_have_text(["step 1 · SQL", "step 2"], timeout=60_000)
    expect(cells(page).nth(2)).to_contain_text("%%sql")
    expect(cells(page).nth(4)).to_contain_text("run(job_input)")

    # A job that cannot be converted says which file, from the nbplane menu.
    (vdk / "30_odd.py").write_text("async def run(job_input):\n    pass\n", encoding="utf-8")
    menu(page, "Convert job to notebook…")
    form = dialog(page)
    form.locator("input[name=directory]").fill("vdkjob")
    form.get_by_role("button", name="Convert").click()
    expect(form.locator(".nbplane-form-error")).to_contain_text("30_odd.py")
