"""A live ``aigc serve`` and a headless Debian chromium driven by Playwright, shared by the browser tests.

The browser is the system's ``chromium`` package (``apt-get install -y chromium``), not a Playwright download:
``playwright install`` is never needed. The tests skip, saying why, only when that browser or the ``playwright``
package is missing; a server that does not start is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from aigc_studio.server.launcher import start_server

CHROMIUM = Path(os.environ.get("AIGC_CHROMIUM", "/usr/bin/chromium"))
# Loading torch and the bundled model takes a few seconds; a slow shared CI machine gets generous room.
SERVER_START_TIMEOUT_S = 90.0


@dataclass
class LiveServer:
    """A running ``aigc serve`` on a free port with its own SQLite database."""

    url: str
    process: subprocess.Popen
    log: Path

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        """POST JSON straight to the API (no browser): the status and the decoded body."""
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory, watermark_key_file: Path) -> Iterator[LiveServer]:
    """``aigc serve --model e2e-copy`` in a temp working directory (its var/ keys) with a temp SQLite database."""
    with start_server(tmp_path_factory.mktemp("studio-server"), "--model", "e2e-copy",
                      env={"AIGC_WATERMARK__KEY_FILE": str(watermark_key_file)}, timeout=SERVER_START_TIMEOUT_S) as server:
        yield LiveServer(url=server.url, process=server.process, log=server.log_path)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian chromium through Playwright's sync API.

    Per module, not per session: while the sync API runs, this thread counts as running an asyncio loop, and
    any later test on the same pytest worker that calls ``asyncio.run`` would fail.
    """
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM}: install the Debian package (apt-get install -y chromium) "
                    "or point AIGC_CHROMIUM at a chromium binary")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed "
                                   "(pip install -e '.[test]')")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, live_server: LiveServer) -> Iterator[object]:
    """A fresh browser context (empty storage) on the studio, failing the test on any uncaught page error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True, locale="en-GB")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(30_000)
    page.goto(live_server.url + "/")
    page.wait_for_selector("body[data-ready='true']")
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
