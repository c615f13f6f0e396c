"""The web page at ``/`` in a real Chromium against a real server on loopback (SQLite): sign-in
and its errors, the cookie's protections, executions of jobs and notebook APIs, and a real
session started, opened, hibernated, resumed and stopped from the page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Screenshot
from tests.integration.api_notebooks import write_all
from tests.integration.server_fixture import Server, nbplane, running_server
from tests.integration.test_control import completed_execution, job_archive
from tests.oauth_provider import User, running_provider

SESSION_TIMEOUT_MS = 120_000
"""A session's Jupyter server may take a while on a busy 2-core machine."""


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[Server]:
    """A server with the notebook APIs of the API tests; sessions start on demand (no pool)."""
    notebooks = tmp_path / "apis"
    notebooks.mkdir()
    write_all(notebooks)
    with running_server(
        notebooks,
        tmp_path / "home",
        f"sqlite:///{tmp_path / 'nbplane.db'}",
        environment={"NBPLANE_SESSION_POOL_SIZE": "0"},
    ) as running:
        yield running


@pytest.fixture
def alice(web_server: Server) -> str:
    """A token of alice, a member of team sales."""
    env = web_server.environment
    nbplane("user", "create", "alice", "--team", "sales", environment=env)
    return nbplane(
        "token", "create", "alice-browser", "--user", "alice", environment=env
    ).stdout.strip()


def sign_in(page: Page, server: Server, token: str) -> None:
    page.goto(server.url + "/")
    page.get_by_label("nbplane token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#user-name")).to_have_text("alice")


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
    expect(page.get_by_role("heading", name="Sessions")).to_be_hidden()
    screenshot("wrong-token")

    page.get_by_label("nbplane token").fill(alice)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#user-name")).to_have_text("alice")
    for heading in ("Sessions", "Recent job executions", "Recent notebook API executions"):
        expect(page.get_by_role("heading", name=heading)).to_be_visible()
    expect(page.get_by_label("Resource class")).to_contain_text("small")
    expect(page.get_by_text("No sessions yet")).to_be_visible()

    (cookie,) = page.context.cookies()
    assert cookie["name"] == "nbplane_token" and cookie["value"] == alice
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    assert page.evaluate("document.cookie") == "", "the page's script cannot read the token"
    forged = page.request.post(url + "/api/v1/sessions", data={})
    assert forged.status == 403 and "X-Nbplane-Csrf" in forged.json()["message"]
    assert page.request.get(url + "/api/v1/sessions").json() == [], "nothing was started"

    page.reload()
    expect(page.locator("#user-name")).to_have_text("alice")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.context.cookies() == []
    page.reload()
    expect(page.get_by_label("nbplane token")).to_be_visible()
    assert page.request.get(url + "/api/v1/me").status == 401

    sign_in(page, web_server, alice)
    nbplane("token", "revoke", "alice-browser", environment=web_server.environment)
    expect(page.locator("#sign-in-error")).to_contain_text("no longer valid", timeout=60_000)
    expect(page.get_by_role("heading", name="Sessions")).to_be_hidden()


def test_job_and_api_executions_with_status_and_links(
    page: Page, web_server: Server, alice: str, tmp_path: Path
) -> None:
    archive = job_archive(tmp_path, "print('daily job says hi')")
    started = completed_execution(web_server, archive, "sales", "daily")
    assert web_server.execute("double", {"x": 1})["status"] == "completed"  # the admin's
    as_alice = {"Authorization": f"Bearer {alice}"}
    for notebook, x, status in (("double", 21, "completed"), ("boom", 5, "failed")):
        ran = httpx.post(
            f"{web_server.url}/api/v1/notebooks/{notebook}/executions",
            timeout=60,
            params={"wait": 30},
            json={"parameters": {"x": x}},
            headers=as_alice,
        )
        assert ran.status_code == 201 and ran.json()["status"] == status, ran.text

    sign_in(page, web_server, alice)
    job_row = page.locator(f"#job-rows tr[data-execution='{started['id']}']")
    expect(job_row).to_contain_text("sales/daily")
    expect(job_row).to_contain_text("completed")
    expect(job_row).to_contain_text("1 of 1 succeeded")
    api_rows = page.locator("#api-rows tr")
    expect(api_rows).to_have_count(2)  # hers, not the admin's
    expect(api_rows.nth(0)).to_contain_text("boom")
    expect(api_rows.nth(0)).to_contain_text("failed")
    expect(api_rows.nth(0)).to_contain_text("bad x 5")
    expect(api_rows.nth(1)).to_contain_text("double")
    expect(api_rows.nth(1)).to_contain_text("completed")
    expect(api_rows.nth(1)).to_contain_text("alice")

    with page.context.expect_page() as opened:
        job_row.get_by_role("link", name=re.compile("^Log of")).click()
    log = opened.value
    expect(log.locator("body")).to_contain_text("daily job says hi")
    log.close()
    with page.context.expect_page() as opened:
        api_rows.nth(1).get_by_role("link", name=re.compile("as HTML")).click()
    html = opened.value
    expect(html.locator("body")).to_contain_text("save_output")
    html.close()
    output = api_rows.nth(1).get_by_role("link", name=re.compile("^Output of"))
    assert page.request.get(web_server.url + str(output.get_attribute("href"))).json() == {"y": 42}


def test_session_start_open_hibernate_resume_stop(
    page: Page, web_server: Server, alice: str, screenshot: Screenshot, screenshots_dir: Path
) -> None:
    sign_in(page, web_server, alice)
    page.get_by_label("Resource class").select_option("large")
    page.get_by_role("button", name="Start session").click()
    expect(page.locator("#message")).to_contain_text("Started session")
    row = page.locator("#session-rows tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("large")
    session_id = str(row.get_attribute("data-session"))
    screenshot("starting")

    expect(row).to_have_attribute("data-status", "running", timeout=SESSION_TIMEOUT_MS)
    expect(row).to_contain_text("ready", timeout=SESSION_TIMEOUT_MS)
    expect(row.locator("details summary")).to_contain_text("steps done")
    open_link = row.get_by_role("link", name=re.compile("^Open session"))
    assert open_link.get_attribute("target") == "_blank"
    assert "noopener" in str(open_link.get_attribute("rel"))
    described = page.request.get(f"{web_server.url}/api/v1/sessions/{session_id}").json()
    opened_at = f"{web_server.url}/sessions/{session_id}/"
    assert open_link.get_attribute("href") == described["url"] == opened_at, described
    assert "token" not in described, "the session's own token stays on the server"
    logs = row.get_by_role("link", name=re.compile("^Server log of session"))
    answer = page.request.get(web_server.url + str(logs.get_attribute("href")))
    assert answer.ok and answer.headers["content-type"].startswith("text/plain")
    assert answer.text().strip(), "the server wrote something at its start"
    screenshot("running")

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
    picture = screenshots_dir / "session-lab-through-the-proxy.png"
    run_a_cell(lab, f"{opened_at}lab/tree/hello.ipynb", picture)
    lab.close()

    row.get_by_role("button", name=re.compile("^Hibernate")).click()
    expect(row).to_have_attribute("data-status", "hibernated", timeout=SESSION_TIMEOUT_MS)
    expect(row.get_by_role("link", name=re.compile("^Open"))).to_have_count(0)
    screenshot("hibernated")

    row.get_by_role("button", name=re.compile("^Resume")).click()
    expect(row).to_have_attribute("data-status", "running", timeout=SESSION_TIMEOUT_MS)
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
        assert page.url == server.url + "/"
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
