"""A real Chromium for the browser tests, driven by Playwright.

Playwright cannot download its own browsers here, so the tests launch the system Chromium
(``scripts/browser.sh`` installs it; ``make test`` runs that first). Every test that uses
``page`` leaves a screenshot of its last state in ``<pytest basetemp>/screenshots`` (printed in
the test report), and may take more along the way with ``screenshot("step-name")``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

expect.set_options(timeout=20_000)
"""Assertions wait as long as a loaded CI machine needs (three workers, servers, kernels and
Chromium on two cores); a passing one returns as soon as it holds."""

CHROMIUM = os.environ.get("NBPLANE_TEST_CHROMIUM", "/usr/bin/chromium")
"""The browser binary the tests drive."""
REQUIRE_BROWSER = os.environ.get("NBPLANE_TEST_REQUIRE_BROWSER") == "1"
"""Set by ``make test``: a missing Chromium or Playwright fails the tests instead of skipping."""

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    # Without these Chromium's own connections (updates, sync) are refused by the closed network.
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

Screenshot = Callable[[str], Path]
"""Saves the page as ``<test name>-<label>.png`` in the screenshots directory; returns the path."""


def _unavailable(reason: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason} but the browser tests are required (NBPLANE_TEST_REQUIRE_BROWSER)")
    pytest.skip(reason)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the browser tests; each test gets its own context and page.

    Package-scoped, not session-scoped: Playwright's sync API keeps an event loop running in the
    main thread while it is open, and the other tests' ``asyncio.run`` refuses to run under it."""
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"{CHROMIUM} is missing (run scripts/browser.sh)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def screenshots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where every browser test leaves its screenshots (under pytest's basetemp)."""
    directory = tmp_path_factory.getbasetemp() / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:120]


def _file_name(request: pytest.FixtureRequest) -> str:
    return _safe(request.node.name)


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest, screenshots_dir: Path) -> Iterator[Page]:
    """A fresh page in a fresh browser context (no cookies shared between tests). At the end
    the page's last state is saved as ``<test name>.png``, pass or fail."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    new_page = context.new_page()
    try:
        yield new_page
    finally:
        path = screenshots_dir / f"{_file_name(request)}.png"
        try:
            new_page.screenshot(path=str(path), full_page=True)
            print(f"screenshot: {path}")
        finally:
            context.close()


@pytest.fixture
def screenshot(page: Page, request: pytest.FixtureRequest, screenshots_dir: Path) -> Screenshot:
    """Take a labelled screenshot of ``page`` now, beside the one taken at the end."""

    def take(label: str) -> Path:
        path = screenshots_dir / f"{_file_name(request)}-{_safe(label)}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
