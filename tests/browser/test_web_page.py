"""The web console at ``/`` in a real Chromium against a real server on loopback (SQLite):
every page driven as a person who never opens a terminal would — sign-in and its errors, the
jobs of their team (edit the schedule with its time zone and arguments, pause, resume, run
now), an execution followed live with its steps, a failing one with its error at file, cell
and line, a notebook API tried through the form made from its contract, sessions, connections
(admins), and the pages at phone width. One server and one signed-in page for the module."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from nbplane.server.auth import CACHE_SECONDS
from tests.browser.conftest import Screenshot
from tests.integration.api_notebooks import write_all
from tests.integration.server_fixture import Server, nbplane, running_server
from tests.integration.test_control import deploy, job_archive
from tests.oauth_provider import User, running_provider

SESSION_TIMEOUT_MS = 120_000
"""A session's Jupyter server may take a while on a busy 2-core machine."""
JOB_TIMEOUT_MS = 90_000
"""A job's process starts Python and a kernel: slow on a loaded machine."""
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
TEAM = "sales"
LIVE_GAP_SECONDS = 6
"""The job prints, then waits this long before its next line: the page must show the first
line while the second is not printed yet, so the log is followed live, not read at the end."""


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with the notebook APIs of the API tests and two deployed jobs of team sales:
    ``daily`` (prints, waits, prints) and ``broken`` (raises in its second step)."""
    root = tmp_path_factory.mktemp("console")
    notebooks = root / "apis"
    notebooks.mkdir()
    write_all(notebooks)
    with running_server(
        notebooks,
        root / "home",
        f"sqlite:///{root / 'nbplane.db'}",
        environment={"NBPLANE_SESSION_POOL_SIZE": "0"},
    ) as running:
        env = running.environment
        nbplane("user", "create", "alice", "--team", TEAM, environment=env)
        daily = job_archive(
            root,
            "print('loading the day', flush=True)",
            f"import time\nprint('tick 0', flush=True)\ntime.sleep({LIVE_GAP_SECONDS})\n"
            "print('tick 1', flush=True)",
            name="daily",
        )
        deploy(running, daily, TEAM, "daily", schedule="0 6 * * *", arguments={"days": 7})
        broken = job_archive(
            root, "x = 1", "y = x + 1\nraise ValueError('bad data in row 7')", name="broken"
        )
        deploy(running, broken, TEAM, "broken")
        yield running


@pytest.fixture(scope="module")
def alice(web_server: Server) -> str:
    """A token of alice, a member of team sales."""
    return nbplane(
        "token", "create", "alice-browser", "--user", "alice", environment=web_server.environment
    ).stdout.strip()


@pytest.fixture(scope="module")
def console(browser: Browser, web_server: Server, alice: str) -> Iterator[Page]:
    """Alice's page, signed in once for the module's tests."""
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(30_000)
    page = context.new_page()
    sign_in(page, web_server, alice)
    try:
        yield page
    finally:
        context.close()


Shot = Callable[[Page, str], Path]
"""Saves a page as ``console-<label>.png``: the pictures of docs/screenshots/."""


@pytest.fixture
def shot(screenshots_dir: Path) -> Shot:
    def take(page: Page, label: str) -> Path:
        path = screenshots_dir / f"console-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}")
        return path

    return take


def sign_in(page: Page, server: Server, token: str, user: str = "alice") -> None:
    page.goto(server.url + "/")
    page.get_by_label("nbplane token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#user-name")).to_have_text(user)


def go(page: Page, server: Server, where: str) -> None:
    """Open the console at ``where`` afresh (a new document, so no heading of the last page
    is taken for this one's)."""
    page.set_viewport_size(DESKTOP)
    page.goto("about:blank")
    page.goto(f"{server.url}/{where}")
    expect(page.locator("#view h2")).to_be_visible()


def fits(page: Page) -> None:
    """The page is no wider than a phone: what is wider (tables, logs) scrolls in its box."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} is {width} px wide on a phone"


def test_sign_in_errors_cookie_and_sign_out(
    page: Page, web_server: Server, alice: str, screenshot: Screenshot
) -> None:
    url = web_server.url
    page.goto(url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.request.get(url + "/api/v1/me").status == 401, "no cookie: 401"

    page.get_by_label("nbplane token").fill("nbp_not-a-real-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#sign-in-error")).to_contain_text("unknown or revoked")
    expect(page.get_by_role("navigation")).to_be_hidden()
    screenshot("wrong-token")

    page.get_by_label("nbplane token").fill(alice)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#user-name")).to_have_text("alice")
    expect(page.locator("#user-teams")).to_have_text("(sales)")
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    nav = page.get_by_role("navigation", name="Console")
    for section in ("Jobs", "Notebook APIs", "Sessions"):
        expect(nav.get_by_role("link", name=section)).to_be_visible()
    expect(nav.get_by_role("link", name="Connections")).to_be_hidden()  # not an admin

    (cookie,) = page.context.cookies()
    assert cookie["name"] == "nbplane_token" and cookie["value"] == alice
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    assert page.evaluate("document.cookie") == "", "the page's script cannot read the token"
    forged = page.request.post(url + "/api/v1/sessions", data={})
    assert forged.status == 403 and "X-Nbplane-Csrf" in forged.json()["message"]
    policy = page.request.get(url + "/").headers["content-security-policy"]
    assert "script-src" not in policy and "default-src 'self'" in policy, "no inline script"

    page.reload()
    expect(page.locator("#user-name")).to_have_text("alice")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.context.cookies() == []
    page.reload()
    expect(page.get_by_label("nbplane token")).to_be_visible()

    revoked = nbplane(
        "token", "create", "alice-short", "--user", "alice", environment=web_server.environment
    ).stdout.strip()
    sign_in(page, web_server, revoked)
    nbplane("token", "revoke", "alice-short", environment=web_server.environment)
    page.wait_for_timeout(CACHE_SECONDS * 1000 + 500)  # the server trusts a token that long
    page.get_by_role("link", name="Notebook APIs").click()
    expect(page.locator("#sign-in-error")).to_contain_text("no longer valid")
    expect(page.get_by_role("navigation")).to_be_hidden()


def test_jobs_edit_schedule_pause_resume_run_now_and_follow_the_log(
    console: Page, web_server: Server, shot: Shot
) -> None:
    page = console
    go(page, web_server, "#/jobs")
    daily = page.locator("tr[data-job='sales/daily']")
    expect(daily).to_contain_text("0 6 * * *")
    expect(daily).to_contain_text("(UTC)")
    expect(daily).to_contain_text("active")
    expect(page.locator("tr[data-job='sales/broken']")).to_contain_text("manual only")
    shot(page, "jobs")

    daily.get_by_role("link", name="daily").click()
    expect(page.get_by_role("heading", name="sales/daily")).to_be_visible()
    page.get_by_label("Time zone").fill("Mars/Olympus")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert").filter(has_text="Mars/Olympus")).to_contain_text("timezone")
    page.get_by_label("Schedule (cron)").fill("30 7 * * 1-5")
    page.get_by_label("Time zone").fill("Europe/Paris")
    page.get_by_label("Arguments (JSON object)").fill('{"days": 3}')
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#message")).to_contain_text("Saved the schedule and arguments")
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("30 7 * * 1-5 (Europe/Paris)")
    expect(facts).to_contain_text('{"days":3}')
    deployment = web_server.client.get("/api/v1/teams/sales/jobs/daily").json()["deployment"]
    assert deployment["schedule"] == "30 7 * * 1-5" and deployment["timezone"] == "Europe/Paris"
    assert deployment["arguments"] == {"days": 3}

    page.get_by_role("button", name="Pause").click()
    expect(facts).to_contain_text("paused")
    assert not web_server.client.get("/api/v1/teams/sales/jobs/daily").json()["deployment"][
        "enabled"
    ]
    page.get_by_role("button", name="Resume").click()
    expect(facts).to_contain_text("active")
    shot(page, "job")

    page.get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"#/jobs/sales/daily/executions/[\w-]+$"))
    execution_id = page.url.rsplit("/", 1)[1]
    expect(page.get_by_role("heading", name=re.compile("^Execution"))).to_contain_text(
        execution_id[:16]
    )
    log = page.locator("#log")
    expect(log).to_contain_text("tick 0", timeout=JOB_TIMEOUT_MS)
    assert "tick 1" not in str(log.text_content()), "the log is shown as it is written"
    expect(page.locator("#execution")).to_have_attribute("data-status", "running")
    expect(page.locator("tr[data-step='1']")).to_contain_text("succeeded")
    shot(page, "execution-running")
    expect(page.locator("#execution")).to_have_attribute(
        "data-status", "completed", timeout=JOB_TIMEOUT_MS
    )
    expect(log).to_contain_text("tick 1")
    expect(page.locator("tr[data-step]")).to_have_count(2)
    expect(page.locator("tr[data-step='2']")).to_contain_text("succeeded")
    expect(page.locator("tr[data-step='2']")).to_contain_text(re.compile(r"\d s"))
    expect(page.locator("#execution")).to_contain_text('{"days":3}')
    shot(page, "execution")
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="Executed notebooks of this execution as HTML").click()
    html = opened.value
    expect(html.locator("body")).to_contain_text("tick 0")
    html.close()

    page.get_by_role("link", name="sales/daily").click()
    row = page.locator(f"tr[data-execution='{execution_id}']")
    expect(row).to_contain_text("completed")
    expect(row).to_contain_text("user:alice")


def test_versions_and_a_failing_execution_with_its_error_at_file_cell_and_line(
    console: Page, web_server: Server, shot: Shot, tmp_path: Path
) -> None:
    page = console
    fixed = job_archive(tmp_path, "x = 1", "y = x + 1", name="broken")
    path = "/api/v1/teams/sales/jobs/broken"
    deployed = web_server.client.get(path).json()["deployment"]["version"]
    uploaded = web_server.client.post(
        f"{path}/versions", content=fixed, headers={"content-type": "application/zip"}
    ).json()["id"]
    go(page, web_server, "#/jobs/sales/broken")
    page.get_by_role("button", name=f"Deploy version {uploaded[:16]}").click()
    expect(page.locator("#message")).to_contain_text(f"now runs version {uploaded[:16]}")
    assert web_server.client.get(path).json()["deployment"]["version"] == uploaded
    page.get_by_role("button", name=f"Deploy version {deployed[:16]}").click()  # and back
    expect(page.get_by_role("button", name=f"Deploy version {uploaded[:16]}")).to_be_visible()
    assert web_server.client.get(path).json()["deployment"]["version"] == deployed
    once = page.get_by_role("form", name="Run once with other arguments")
    once.get_by_label("Arguments of this run only").fill("[1]")
    once.get_by_role("button", name="Run with these arguments").click()
    expect(once.locator(".error")).to_contain_text("arguments: a JSON object is needed")
    once.get_by_label("Arguments of this run only").fill('{"row": 7}')
    once.get_by_role("button", name="Run with these arguments").click()
    expect(page.locator("#execution")).to_have_attribute(
        "data-status", "failed", timeout=JOB_TIMEOUT_MS
    )
    expect(page.locator("#execution")).to_contain_text('{"row":7}')
    assert web_server.client.get(path).json()["deployment"]["arguments"] == {}, "this run only"
    failure = page.locator("section.failure")
    expect(failure.get_by_role("heading")).to_contain_text("Step 2")
    expect(failure.locator(".place")).to_have_text("10_main.ipynb, cell 2, line 2")
    expect(failure).to_contain_text("ValueError: bad data in row 7")
    expect(failure).to_contain_text("raise ValueError('bad data in row 7')")
    expect(page.locator("tr[data-step='1']")).to_contain_text("succeeded")
    expect(page.locator("tr[data-step='2']")).to_contain_text("failed")
    shot(page, "execution-failed")
    page.set_viewport_size(PHONE)
    fits(page)
    shot(page, "phone-execution-failed")


def test_notebook_api_form_runs_and_shows_output_html_and_log(
    console: Page, web_server: Server, shot: Shot
) -> None:
    page = console
    go(page, web_server, "#/apis")
    expect(page.locator("tr[data-api='double']")).to_contain_text("x")
    shot(page, "apis")
    page.get_by_role("link", name="double", exact=True).click()
    expect(page.get_by_role("heading", name="double")).to_be_visible()
    page.get_by_label("x *").fill("21")
    shot(page, "api")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#execution")).to_have_attribute(
        "data-status", "completed", timeout=JOB_TIMEOUT_MS
    )
    expect(page.locator("#output")).to_contain_text('"y": 42')
    expect(page.get_by_role("heading", name="Log")).to_be_visible()
    expect(page.locator("#execution")).to_contain_text('{"x":21}')
    shot(page, "api-execution")
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="Executed notebook as HTML").click()
    html = opened.value
    expect(html.locator("body")).to_contain_text("save_output")
    html.close()

    go(page, web_server, "#/apis/boom")
    page.get_by_label("x *").fill("5")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#execution")).to_have_attribute(
        "data-status", "failed", timeout=JOB_TIMEOUT_MS
    )
    failure = page.locator("section.failure")
    expect(failure).to_contain_text("bad x 5")
    expect(page.get_by_role("heading", name="Log")).to_be_visible()
    shot(page, "api-execution-failed")
    page.get_by_role("link", name="boom").click()
    expect(page.locator("tr[data-execution]")).to_have_count(1)
    expect(page.locator("tr[data-execution]")).to_contain_text("failed")


def test_connections_for_admins(page: Page, web_server: Server, shot: Shot) -> None:
    admin = web_server.client.get("/api/v1/me").json()["user"]
    sign_in(page, web_server, web_server.token, admin)
    page.get_by_role("link", name="Connections").click()
    expect(page.get_by_role("heading", name="Connections")).to_be_visible()
    page.get_by_label("Name").fill("warehouse")
    page.get_by_label("Kind").select_option("database")
    page.get_by_label("Description").fill("the sales warehouse")
    page.get_by_label("Values (JSON object, write-only)").fill('{"url": "postgresql://db/sales"}')
    page.get_by_label("Grant to team (optional)").fill("sales")
    page.get_by_role("button", name="Create connection").click()
    row = page.locator("tr[data-connection='warehouse']")
    expect(row).to_contain_text("url")
    expect(row).to_contain_text("team sales")
    expect(row).not_to_contain_text("postgresql://db/sales")  # values are write-only
    shot(page, "connections")
    row.get_by_role("button", name="Delete connection warehouse").click()
    expect(page.get_by_text("No connections yet.")).to_be_visible()


def test_pages_fit_a_phone(console: Page, web_server: Server, shot: Shot) -> None:
    page = console
    for where, label in (
        ("#/jobs", "jobs"),
        ("#/jobs/sales/daily", "job"),
        ("#/apis/double", "api"),
    ):
        go(page, web_server, where)
        page.set_viewport_size(PHONE)
        fits(page)
        shot(page, f"phone-{label}")


def test_sessions_start_open_hibernate_resume_stop(
    console: Page, web_server: Server, shot: Shot, screenshots_dir: Path
) -> None:
    page = console
    go(page, web_server, "#/sessions")
    page.get_by_label("Resource class").select_option("large")
    page.get_by_role("button", name="Start session").click()
    expect(page.locator("#message")).to_contain_text("Started session")
    row = page.locator("tr[data-session]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("large")
    session_id = str(row.get_attribute("data-session"))
    expect(row.locator("code")).to_have_text(session_id[:16])
    expect(row).to_have_attribute("data-status", "running", timeout=SESSION_TIMEOUT_MS)
    expect(row).to_contain_text("ready", timeout=SESSION_TIMEOUT_MS)
    open_link = row.get_by_role("link", name=re.compile("^Open session"))
    assert open_link.get_attribute("target") == "_blank"
    assert "noopener" in str(open_link.get_attribute("rel"))
    opened_at = f"{web_server.url}/sessions/{session_id}/"
    assert open_link.get_attribute("href") == opened_at
    assert "/home" not in str(page.locator("#view").text_content()), "no server paths"
    shot(page, "sessions")
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "source": "print('through the door:', 41 + 1)",
                "metadata": {},
                "outputs": [],
                "execution_count": None,
            }
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    saved = page.request.put(  # the signed-in browser, through nbplane
        f"{opened_at}api/contents/hello.ipynb",
        data={"type": "notebook", "content": notebook},
        headers={"X-XSRFToken": "page"},
    )
    assert saved.ok, saved.text()
    with page.context.expect_page() as opened:
        open_link.click()
    lab = opened.value
    lab.wait_for_load_state()
    assert lab.url.startswith(opened_at), lab.url
    expect(lab).to_have_title(re.compile("JupyterLab"), timeout=60_000)
    run_a_cell(lab, f"{opened_at}lab/tree/hello.ipynb", screenshots_dir / "session-lab.png")
    lab.close()

    row.get_by_role("button", name=re.compile("^Hibernate")).click()
    expect(row).to_have_attribute("data-status", "hibernated", timeout=SESSION_TIMEOUT_MS)
    expect(row.get_by_role("link", name=re.compile("^Open"))).to_have_count(0)
    row.get_by_role("button", name=re.compile("^Resume")).click()
    expect(row.get_by_role("link", name=re.compile("^Open session"))).to_be_visible(
        timeout=SESSION_TIMEOUT_MS
    )
    row.get_by_role("button", name=re.compile("^Stop")).click()
    expect(page.get_by_text("No sessions yet")).to_be_visible(timeout=SESSION_TIMEOUT_MS)
    assert page.request.get(f"{web_server.url}/api/v1/sessions").json() == []


def run_a_cell(lab: Page, url: str, picture: Path) -> None:
    """Open the notebook at ``url`` in JupyterLab, run its first cell (JupyterLab holds it
    until the kernel is connected), see its output: the kernel's messages came over the
    proxied WebSocket. The page is saved at ``picture``."""
    lab.goto(url)
    cell = lab.locator(".jp-Notebook .jp-Cell").first
    expect(cell).to_be_visible(timeout=60_000)
    choose = lab.get_by_role("dialog").get_by_role("button", name="Select Kernel")
    idle = lab.get_by_role("button", name=re.compile(r"Python 3 \(ipykernel\) \| Idle"))
    expect(choose.or_(idle).first).to_be_visible(timeout=60_000)
    if choose.is_visible():  # JupyterLab may ask, though the notebook names its kernel
        choose.click()
    expect(idle).to_be_visible(timeout=60_000)
    cell.locator(".cm-content").click()
    lab.keyboard.press("Shift+Enter")
    expect(cell.locator(".jp-OutputArea-output")).to_contain_text(
        "through the door: 42", timeout=60_000
    )
    lab.screenshot(path=str(picture), full_page=True)
    print(f"screenshot: {picture}")


def test_oauth_sign_in_and_sign_out_revokes_its_token(page: Page, tmp_path: Path) -> None:
    (tmp_path / "apis").mkdir()
    with (
        running_provider() as provider,
        running_server(
            tmp_path / "apis",
            tmp_path / "home",
            f"sqlite:///{tmp_path / 'nbplane.db'}",
            environment={**provider.settings, "NBPLANE_SESSION_POOL_SIZE": "0"},
        ) as server,
    ):
        provider.user = User("dana", ["analytics"])
        page.goto(server.url + "/")
        page.get_by_role(
            "link", name=f"sign in with {provider.url.removeprefix('http://')}"
        ).click()
        expect(page.locator("#user-name")).to_have_text("dana")
        assert page.url.startswith(server.url + "/")
        (cookie,) = page.context.cookies()
        assert cookie["name"] == "nbplane_token" and cookie["httpOnly"]
        as_dana = {"Authorization": f"Bearer {cookie['value']}"}
        me = httpx.get(f"{server.url}/api/v1/me", headers=as_dana).json()
        assert me["user"] == "dana" and me["teams"] == ["analytics"]
        assert cookie["value"] not in provider.tokens, "nbplane's own token, not the provider's"

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        assert httpx.get(f"{server.url}/api/v1/me", headers=as_dana).status_code == 401, (
            "signing out revokes the token the OAuth sign-in made"
        )

        page.goto(server.url + "/nbplane/oauth/callback?state=forged&code=forged")
        expect(page.locator("#sign-in-error")).to_contain_text("started no OAuth sign-in")
        assert page.url == server.url + "/", "the reason is shown, then dropped from the address"
        expect(page.locator("#user-name")).to_be_hidden()


def test_openid_sign_in_and_sign_out_at_the_provider(page: Page, tmp_path: Path) -> None:
    """The oidc authenticator from the console: the provider's login, then signing out ends the
    session at the provider too (RP-initiated logout) and comes back to the page."""
    (tmp_path / "apis").mkdir()
    with (
        running_provider() as provider,
        running_server(
            tmp_path / "apis",
            tmp_path / "home",
            f"sqlite:///{tmp_path / 'nbplane.db'}",
            environment={**provider.oidc_settings, "NBPLANE_SESSION_POOL_SIZE": "0"},
        ) as server,
    ):
        provider.user = User("eli", ["ops"])
        page.goto(server.url + "/")
        page.get_by_role(
            "link", name=f"sign in with {provider.url.removeprefix('http://')}"
        ).click()
        expect(page.locator("#user-name")).to_have_text("eli")
        (cookie,) = page.context.cookies()
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        assert page.url.startswith(server.url + "/"), "the provider sent the browser back"
        assert provider.ended and provider.ended[-1]["client_id"] == "nbplane-cli"
        as_eli = {"Authorization": f"Bearer {cookie['value']}"}
        assert httpx.get(f"{server.url}/api/v1/me", headers=as_eli).status_code == 401
