"""nbplane in a real JupyterLab, driven through a real Chromium: the nbplane menu, the step
toggle in the cell toolbar, a run with its live steps, a failing cell marked with its error,
resume, and a deploy to a real nbplane server on loopback whose status the side panel shows.

JupyterLab runs ``jupyter lab`` on a loopback port with the installed extension (built by
``pip install``) and nbplane's server extension, in a temporary root directory; every test
opens its own workspace so no layout carries over.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import Screenshot
from tests.conftest import BACKENDS, database_url, write_notebook
from tests.integration.server_fixture import Server, free_port, nbplane, running_server, stop
from tests.oauth_provider import User, running_provider

RUN_TIMEOUT_MS = 120_000
"""A run starts a Python process per job on a busy 2-core machine."""
DOCS = Path(__file__).resolve().parents[2] / "docs"
DOCS_SCREENSHOT = DOCS / "jupyterlab.png"
"""The README's picture of the JupyterLab flow (a failed run at its cell); it and the pictures
of docs/screenshots/ are refreshed when NBPLANE_UPDATE_DOCS_SCREENSHOT=1."""
BOX_DRAWING = set("─│┃━┏┓┗┛╇┡└┘├┤┬┴┼═║")


def docs_screenshot(page: Page, path: Path, clip: Locator | None = None) -> None:
    """Refresh a picture of the docs (a 1280 px wide page, or one part of it)."""
    if os.environ.get("NBPLANE_UPDATE_DOCS_SCREENSHOT") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        (clip or page).screenshot(path=str(path))


def intersects(first: Locator, second: Locator) -> bool:
    """Whether two elements' boxes on the page overlap."""
    a, b = first.bounding_box(), second.bounding_box()
    assert a and b, (a, b)
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    environment: dict[str, str]

    def open(self, page: Page, workspace: str) -> None:
        """Open JupyterLab in a fresh workspace and wait for the nbplane menu."""
        page.goto(f"{self.url}lab/workspaces/{workspace}?reset&token={self.token}")
        expect(menu_bar_item(page, "nbplane")).to_be_visible(timeout=60_000)

    def create_job(self, name: str, team: str = "analytics") -> Path:
        """A job folder from the scaffold, made by the CLI in the Jupyter root."""
        nbplane(
            "job",
            "create",
            name,
            "--team",
            team,
            "--directory",
            str(self.root),
            environment=self.environment,
        )
        return self.root / name


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """``jupyter lab`` on loopback with nbplane's extensions; its own nbplane home and store."""
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "root"
    root.mkdir()
    config = base / "config"
    (config / "labconfig").mkdir(parents=True)
    # No "Jupyter news" pop-up over the page.
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    settings = base / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # The scaffold's notebooks name no kernel: start the default one instead of asking.
    (settings / "tracker.jupyterlab-settings").write_text(
        json.dumps({"autoStartDefaultKernel": True})
    )
    home = base / "home"
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("NBPLANE_URL", "NBPLANE_TOKEN", "JUPYTER_CONFIG_DIR")
    }
    environment.update(
        {
            "NBPLANE_HOME": str(home),
            "NBPLANE_STORE_URL": f"sqlite:///{home / 'nbplane.db'}",
            "NBPLANE_DB_URL": f"sqlite:///{home / 'warehouse.sqlite'}",
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
            "JUPYTER_PLATFORM_DIRS": "1",
        }
    )
    token = secrets.token_hex(16)
    port = free_port()
    log = base / "jupyterlab.log"
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
        f"--LabApp.user_settings_dir={base / 'settings'}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
    ]
    with log.open("w") as output:
        process = subprocess.Popen(
            command, cwd=root, env=environment, stdout=output, stderr=subprocess.STDOUT, text=True
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_ready(url, token, process, log)
        yield Lab(url, token, root, environment)
    finally:
        stop(process)


def wait_ready(url: str, token: str, process: subprocess.Popen[str], log: Path) -> None:
    """Until the server answers, and its nbplane extension does too."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"jupyter lab exited:\n{log.read_text()}")
        try:
            answer = httpx.get(
                f"{url}nbplane/status", timeout=2, headers={"Authorization": f"token {token}"}
            )
            if answer.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"jupyter lab not ready in 120 s:\n{log.read_text()}")


def menu_bar_item(page: Page, label: str) -> Locator:
    return page.locator("#jp-menu-panel .lm-MenuBar-itemLabel", has_text=re.compile(f"^{label}$"))


def menu(page: Page, item: str) -> None:
    """Choose ``item`` from the nbplane menu."""
    menu_bar_item(page, "nbplane").click()
    page.locator(".lm-Menu .lm-Menu-item:not(.lm-mod-hidden)", has_text=item).first.click()


def dialog(page: Page) -> Locator:
    return page.locator(".jp-Dialog-content")


def notification(page: Page, text: str) -> Locator:
    """A JupyterLab notification (toast) that contains ``text``."""
    return page.locator(".Toastify__toast", has_text=text).first


def cells(page: Page) -> Locator:
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")


def open_notebook(lab: Lab, page: Page, path: str) -> None:
    page.goto(f"{lab.url}lab/workspaces/{secrets.token_hex(4)}/tree/{path}?reset&token={lab.token}")
    expect(cells(page).first).to_be_visible(timeout=60_000)


def run_from_menu(page: Page, item: str, directory: str) -> Locator:
    """Run (or resume) ``directory`` from the menu; the run's view."""
    menu(page, item)
    form = dialog(page)
    form.locator("input[name=directory]").fill(directory)
    form.get_by_role("button", name=re.compile("^(Run|Resume)$")).click()
    view = page.locator(".nbplane-run").last
    expect(view).to_be_visible()
    return view


def wait_run(view: Locator, status: str) -> None:
    expect(view).to_have_attribute(
        "data-status", re.compile("succeeded|failed|cancelled"), timeout=RUN_TIMEOUT_MS
    )
    expect(view).to_have_attribute("data-status", status)


def test_create_job_tag_steps_and_run(lab: Lab, page: Page, screenshot: Screenshot) -> None:
    lab.open(page, "create")
    menu(page, "Create job…")
    form = dialog(page)
    form.locator("input[name=name]").fill("Hello World")
    form.get_by_role("button", name="Create").click()
    # Checked before sending: the name's rule, at the name field.
    expect(form.locator(".nbplane-form-error")).to_contain_text("lowercase letters")
    expect(form.locator("input[name=name]")).to_have_attribute("aria-invalid", "true")
    form.locator("input[name=name]").fill("hello")
    form.get_by_role("button", name="Create").click()

    # The scaffold's notebook opens with its three step cells numbered, SQL ones marked.
    notebook = cells(page)
    expect(notebook).to_have_count(5, timeout=60_000)
    badges = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .nbplane-step-badge")
    expect(badges).to_have_text(["step 1 · SQL", "step 2", "step 3 · SQL"])

    # The last cell is not a step; the cell toolbar's button makes it one, numbered 4.
    last = notebook.nth(4)
    last.locator(".jp-InputArea-editor").click()
    toggle = last.locator(".jp-cell-toolbar [data-command='nbplane:toggle-step']")
    toggle.click()
    expect(last.locator(".nbplane-step-badge")).to_have_text("step 4")
    screenshot("tagged")
    # The badge sits clear of the active cell's toolbar, whose buttons stay clickable.
    toolbar = last.locator(".jp-cell-toolbar")
    expect(toolbar).to_be_visible()
    assert not intersects(last.locator(".nbplane-step-badge"), toolbar)
    docs_screenshot(page, DOCS / "screenshots" / "lab-step-badges.png")
    # ...and again makes it an exploration cell.
    toggle.click()
    # a loaded machine can take seconds to number the cells again
    expect(last.locator(".nbplane-step-badge")).to_have_count(0, timeout=20_000)
    toggle.click()
    expect(badges).to_have_count(4, timeout=20_000)

    # The kernel has started and written its name into the notebook (a change Lab makes, not
    # the run), so the notebook the run saves stays saved unless the run modifies it.
    expect(page.locator("#jp-main-statusbar")).to_contain_text("Idle", timeout=60_000)
    view = run_from_menu(page, "Run job…", "hello")
    wait_run(view, "succeeded")
    expect(view.locator(".nbplane-run-step")).to_have_count(4)
    expect(view.locator(".nbplane-run-step[data-status=succeeded]")).to_have_count(4)
    expect(view.locator(".nbplane-run-summary")).to_contain_text("4 of 4 steps done")
    expect(view.locator(".nbplane-run-log")).to_contain_text("hello, world")
    # One numbering: the run view names each step as its badge does, and its cell as Lab
    # counts cells (the markdown cell is cell 1).
    for number, cell in [(1, 2), (2, 3), (3, 4), (4, 5)]:
        expect(view.locator(f".nbplane-run-step[data-step='{number}']")).to_contain_text(
            f"step {number} · cell {cell} of 10_hello.ipynb"
        )
        expect(notebook.nth(cell - 1).locator(".nbplane-step-badge")).to_have_attribute(
            "data-step", str(number)
        )
    # The log is plain text: no box drawing, no hint holding the server's paths.
    log = view.locator(".nbplane-run-log").inner_text()
    assert not set(log) & BOX_DRAWING, log
    assert str(lab.root) not in log and "show-run" not in log, log
    # The notebook shows what each step printed, numbered by step, and is not marked modified.
    step2 = notebook.nth(2)
    expect(step2.locator(".jp-OutputArea-output")).to_contain_text("hello, world")
    expect(step2.locator(".jp-InputPrompt")).to_contain_text("[2]")
    expect(page.locator(".lm-TabBar-tab.jp-mod-dirty")).to_have_count(0)
    docs_screenshot(page, DOCS / "screenshots" / "lab-run-view.png")
    # ...and the run's executed notebooks open in a new tab.
    with page.expect_popup() as popup:
        view.get_by_role("link", name="Open executed notebook").click()
    expect(popup.value.locator("body")).to_contain_text("hello, world")
    expect(popup.value.locator("body")).to_contain_text("succeeded")
    popup.value.close()
    # The tag was saved before the run: the run read the notebook as shown.
    saved = json.loads((lab.root / "hello" / "10_hello.ipynb").read_text())
    assert "step" in saved["cells"][4]["metadata"]["tags"]


def test_failing_cell_shows_its_error_then_resume(
    lab: Lab, page: Page, screenshot: Screenshot
) -> None:
    lab.create_job("broken")
    open_notebook(lab, page, "broken/10_hello.ipynb")
    # Break the second step: its last line divides by zero.
    editor = cells(page).nth(2).locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\n1/0")
    expect(editor).to_contain_text("1/0")

    view = run_from_menu(page, "Run job…", "broken")
    wait_run(view, "failed")
    expect(view.locator(".nbplane-run-step[data-status=failed]")).to_have_count(1)
    expect(view.locator(".nbplane-run-error")).to_contain_text("ZeroDivisionError")

    # The failing cell is highlighted with the error, in the notebook itself.
    failed = page.locator(".jp-NotebookPanel .nbplane-failed-cell")
    expect(failed).to_have_count(1)
    expect(failed.locator(".nbplane-cell-error")).to_contain_text("ZeroDivisionError")
    expect(failed.locator(".cm-content")).to_contain_text("1/0")
    expect(view.locator(".nbplane-run-error")).to_contain_text("step 2 · cell 3 of 10_hello.ipynb")
    # The cell shows what it printed before failing; the error once, in the mark.
    expect(failed.locator(".jp-OutputArea-output")).to_contain_text("hello, world")
    expect(failed.locator(".jp-OutputArea-output")).not_to_contain_text("Traceback")
    screenshot("failed-cell")
    docs_screenshot(page, DOCS_SCREENSHOT)

    # The marking survives a reload of the page: the server keeps it in the run records.
    page.reload()
    failed = page.locator(".jp-NotebookPanel .nbplane-failed-cell")
    expect(failed).to_have_count(1, timeout=60_000)
    expect(failed.locator(".nbplane-cell-error")).to_contain_text("ZeroDivisionError")
    expect(failed.locator(".cm-content")).to_contain_text("1/0")
    docs_screenshot(page, DOCS / "screenshots" / "lab-failing-cell.png")

    # Fix the cell (drop the last line), then resume: the first step is not run again.
    editor = failed.locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+End")
    page.keyboard.press("Shift+Home")
    page.keyboard.press("Backspace")
    page.keyboard.press("Backspace")
    expect(editor).not_to_contain_text("1/0")
    view = run_from_menu(page, "Resume job…", "broken")
    wait_run(view, "succeeded")
    expect(view.locator(".nbplane-run-step").first).to_have_attribute("data-status", "skipped")
    expect(view.locator(".nbplane-run-step[data-status=succeeded]")).to_have_count(2)
    expect(page.locator(".jp-NotebookPanel .nbplane-failed-cell")).to_have_count(0)


def test_cancel_a_running_run(lab: Lab, page: Page, screenshot: Screenshot) -> None:
    job = lab.root / "slow"
    job.mkdir()
    write_notebook(
        job / "10_slow.ipynb",
        [
            "print('started', flush=True)",
            "import time\nprint('waiting', flush=True)\ntime.sleep(600)",
            "print('never')",
        ],
    )
    lab.open(page, "cancel")
    view = run_from_menu(page, "Run job…", "slow")
    # Live: the second step runs and its output is in the log while it runs.
    expect(view.locator(".nbplane-run-step").nth(1)).to_have_attribute(
        "data-status", "running", timeout=RUN_TIMEOUT_MS
    )
    expect(view.locator(".nbplane-run-log")).to_contain_text("waiting")
    expect(view.locator(".nbplane-run-step").first).to_have_attribute("data-status", "succeeded")
    screenshot("running")
    view.get_by_role("button", name="Cancel run").click()
    wait_run(view, "cancelled")
    expect(view.get_by_role("button", name="Cancel run")).to_be_hidden()
    expect(view.locator(".nbplane-run-log")).not_to_contain_text("never")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def nbplane_server(backend: str, tmp_path: Path) -> Iterator[Server]:
    """A real nbplane server on loopback, its store on SQLite or PostgreSQL."""
    notebooks = tmp_path / "apis"
    notebooks.mkdir()
    with (
        database_url(backend, tmp_path) as store_url,
        running_server(notebooks, tmp_path / "server-home", store_url) as server,
    ):
        yield server


def log_in(page: Page, server: Server, user: str, team: str) -> None:
    """A new user of ``team`` on the server, logged in from the nbplane menu with a token."""
    environment = server.environment
    nbplane("user", "create", user, "--team", team, environment=environment)
    token = nbplane(
        "token", "create", f"{user}-lab", "--user", user, environment=environment
    ).stdout.strip()
    menu(page, "Login…")
    form = dialog(page)
    form.locator("input[name=url]").fill(server.url)
    form.locator("input[name=token]").fill("nbp_not-a-real-token")
    form.get_by_role("button", name="Log in with token").click()
    # The server's refusal, in words, in the reopened dialog.
    expect(form.locator(".nbplane-form-error")).to_be_visible()
    form.locator("input[name=token]").fill(token)
    form.get_by_role("button", name="Log in with token").click()
    expect(notification(page, f"as {user}.")).to_be_visible()


def test_login_deploy_and_status_in_the_panel(
    lab: Lab, page: Page, nbplane_server: Server, backend: str, screenshot: Screenshot
) -> None:
    name = f"daily-{backend}"
    lab.create_job(name)
    open_notebook(lab, page, f"{name}/10_hello.ipynb")
    log_in(page, nbplane_server, "alice", "analytics")

    menu(page, "Deploy job…")
    form = dialog(page)
    form.locator("input[name=directory]").fill(name)
    form.locator("input[name=schedule]").fill("*/5 *")
    form.locator("input[name=reason]").fill("first deploy from JupyterLab")
    form.locator("input[name=run_first]").check()
    form.get_by_role("button", name="Deploy").click()
    expect(form.locator(".nbplane-form-error")).to_contain_text("has 2 fields")
    form.locator("input[name=schedule]").fill("*/5 * * * *")
    form.locator("input[name=retries]").fill("11")
    form.get_by_role("button", name="Deploy").click()
    expect(form.locator(".nbplane-form-error")).to_contain_text("from 0 to 10")
    form.locator("input[name=retries]").fill("2")
    form.locator("select[name=retry_on]").select_option("platform")
    form.get_by_role("button", name="Deploy").click()

    # The side panel shows the job and its execution, until that execution ends.
    panel = page.locator("#nbplane-jobs-panel")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("alice at")
    row = panel.locator(f"tr[data-job='analytics/{name}']")
    expect(row).to_contain_text("*/5 * * * *")
    # The panel reads the jobs again every few seconds while it is visible.
    expect(row.locator(".nbplane-badge")).to_have_text("completed", timeout=RUN_TIMEOUT_MS)
    screenshot("panel")

    # The job's details: deployment, executions and the log of the latest one.
    row.click()
    details = page.locator(".nbplane-details").last
    expect(details).to_contain_text("first deploy from JupyterLab")
    expect(details).to_contain_text("2 on platform failures, the first after 60s")
    expect(details.locator(".nbplane-executions .nbplane-badge").first).to_have_text("completed")
    expect(details.locator(".nbplane-run-log")).to_contain_text("hello, world")


def test_execute_download_delete_and_logout(
    lab: Lab, page: Page, nbplane_server: Server, backend: str, screenshot: Screenshot
) -> None:
    name = f"weekly-{backend}"
    lab.create_job(name)
    lab.open(page, name)
    log_in(page, nbplane_server, "bob", "analytics")
    deployed = httpx.post(
        f"{lab.url}nbplane/deploy",
        json={"directory": name},
        headers={"Authorization": f"token {lab.token}"},
        timeout=60,
    )
    assert deployed.status_code == 201, deployed.text

    menu(page, "Execute deployed job…")
    form = dialog(page)
    form.locator("input[name=team]").fill("analytics")
    form.locator("input[name=name]").fill(name)
    form.locator("textarea[name=arguments]").fill('{"who": lab}')
    form.get_by_role("button", name="Execute").click()
    expect(form.locator(".nbplane-form-error")).to_contain_text("not valid JSON")
    form.locator("textarea[name=arguments]").fill('{"who": "lab"}')
    form.get_by_role("button", name="Execute").click()
    # The job's details open and follow the execution until it ends.
    details = page.locator(".nbplane-details").last
    badge = details.locator(".nbplane-executions .nbplane-badge").first
    expect(badge).to_have_text("completed", timeout=RUN_TIMEOUT_MS)
    expect(details.locator(".nbplane-run-log")).to_contain_text("hello, lab")

    menu(page, "Download job…")
    form = dialog(page)
    expect(form.locator("input[name=name]")).to_have_value(name)
    with page.expect_download() as download:
        form.get_by_role("button", name="Download").click()
    archive = Path(download.value.path())
    with zipfile.ZipFile(archive) as job:
        assert "10_hello.ipynb" in job.namelist()

    menu(page, "Delete job…")
    form = dialog(page)
    form.locator("input[name=name]").fill(f"{name}-missing")
    form.get_by_role("button", name="Delete").click()
    expect(form.locator(".nbplane-form-error")).to_contain_text(f"{name}-missing")
    form.locator("input[name=name]").fill(name)
    form.get_by_role("button", name="Delete").click()
    expect(notification(page, f"Deleted analytics/{name}.")).to_be_visible()
    menu(page, "Jobs")
    panel = page.locator("#nbplane-jobs-panel")
    expect(panel.locator(f"tr[data-job='analytics/{name}']")).to_have_count(0)

    menu(page, "Logout")
    expect(panel.get_by_role("button", name="Log in")).to_be_visible()
    screenshot("logged-out")


def test_oauth_login_in_a_new_tab_keeps_the_token_out_of_the_browser(
    lab: Lab, page: Page, tmp_path: Path, screenshot: Screenshot
) -> None:
    notebooks = tmp_path / "apis"
    notebooks.mkdir()
    with (
        running_provider() as provider,
        running_server(
            notebooks,
            tmp_path / "server-home",
            f"sqlite:///{tmp_path / 'server.db'}",
            environment=provider.settings,
        ) as server,
    ):
        provider.user = User("carol", ["analytics"])
        lab.open(page, "oauth")
        menu(page, "Login…")
        form = dialog(page)
        oauth = form.get_by_role("button", name="Log in with OAuth")
        form.locator("input[name=url]").fill(server.url)
        # Offered because this server says it takes OAuth logins.
        expect(oauth).to_be_visible()
        with page.expect_popup() as popup:
            oauth.click()
        # The provider approves at once and sends the tab back to the Jupyter server.
        expect(popup.value.locator("body")).to_contain_text("Logged in to nbplane as carol")
        expect(notification(page, "as carol.")).to_be_visible(timeout=60_000)
        screenshot("logged-in")

    saved = json.loads((Path(lab.environment["NBPLANE_HOME"]) / "credentials.json").read_text())
    assert saved["url"] == server.url
    storage = page.evaluate(
        "() => JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie])"
    )
    assert saved["token"] not in storage, "the nbplane token stays on the Jupyter server"
