"""The support chat widget on a third-party page and the agent console in the studio, in Chromium.

A live ``aigc serve`` runs on the small support installation of tests/support (seven-intent knowledge base, its
router, the demo customers). The widget's host page comes from another origin (a small HTTP server on
another port; a real loopback server, since Chromium refuses a public-looking page access to loopback) with
hostile CSS, so the test also covers CORS and the shadow DOM keeping styles apart.
"""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from aigc_studio.server.launcher import start_server

from .conftest import SERVER_START_TIMEOUT_S, LiveServer

# CSS of a careless host page: it must not restyle the widget.
HOST_PAGE = """<!doctype html><html><head><title>Shop</title>
<style>* {{ font-size: 40px !important; }} button {{ background: rgb(255, 0, 0); }} .msg {{ display: none; }}</style>
</head><body><h1>Our shop</h1>
<script src="{server}/widget.js" data-customer="C1001" data-title="Harbourline help" data-poll-ms="300"></script>
</body></html>"""


@dataclass
class Shop:
    """A third-party site that embeds the widget: serves HOST_PAGE at /shop.html."""

    origin: str
    page: str = ""


@pytest.fixture(scope="module")
def shop() -> Iterator[Shop]:
    site = Shop(origin="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            body = site.page.encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    site.origin = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield site
    server.shutdown()


def _support_fixtures():
    # The installation builder lives with the support tests; load it by path (the test folders are not packages).
    path = Path(__file__).resolve().parents[1] / "support" / "conftest.py"
    spec = importlib.util.spec_from_file_location("support_test_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def support_server(tmp_path_factory: pytest.TempPathFactory, shop: Shop) -> Iterator[LiveServer]:
    """``aigc serve`` on the support installation, accepting the shop's origin (CORS)."""
    home = _support_fixtures().build_support_installation(tmp_path_factory.mktemp("support-server"))
    env = {"AIGC_SUPPORT__INDEX_DIR": str(home / "support" / "index"),
           "AIGC_SERVER__CORS_ORIGINS": json.dumps([shop.origin])}
    with start_server(home, "--model", "e2e-copy", env=env, timeout=SERVER_START_TIMEOUT_S) as server:
        shop.page = HOST_PAGE.format(server=server.url)
        yield LiveServer(url=server.url, process=server.process, log=server.log_path)


@pytest.fixture
def context(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    errors: list[str] = []
    context.on("weberror", lambda error: errors.append(str(error.error)))
    yield context
    context.close()
    assert not errors, f"uncaught errors in the pages: {errors}"


def open_shop(context, shop: Shop):
    """The shop page (another origin) with the widget's script tag."""
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{shop.origin}/shop.html")
    page.wait_for_selector("#aigc-support-widget", state="attached")
    return page


def send(page, text: str) -> None:
    page.fill("#aigc-support-widget >> input[name=message]", text)
    page.press("#aigc-support-widget >> input[name=message]", "Enter")


def test_the_widget_answers_on_a_third_party_page_untouched_by_its_css(context, support_server: LiveServer,
                                                                        shop: Shop) -> None:
    page = open_shop(context, shop)
    launcher = page.locator("#aigc-support-widget >> .launcher")
    # The host page's CSS stops at the shadow root.
    assert launcher.evaluate("b => getComputedStyle(b).backgroundColor") != "rgb(255, 0, 0)"
    launcher.click()
    assert page.locator("#aigc-support-widget >> .title").inner_text() == "Harbourline help"
    send(page, "How do I change my PIN?")
    reply = page.locator("#aigc-support-widget >> .msg.assistant").first
    reply.wait_for()
    assert "pick a new 4-digit PIN" in reply.inner_text() and "Hi Alice" in reply.inner_text()
    assert reply.get_attribute("data-action") == "answer"
    assert "Source: How do I change my PIN?" in reply.locator(".sources").inner_text()
    assert reply.evaluate("m => getComputedStyle(m).display") != "none"
    assert reply.evaluate("m => getComputedStyle(m).fontSize") == "14px"


def test_a_handoff_reaches_the_console_and_the_agent_reply_reaches_the_widget(context,
                                                                              support_server: LiveServer,
                                                                              shop: Shop) -> None:
    shop_page = open_shop(context, shop)
    shop_page.evaluate("() => localStorage.clear()")
    shop_page.reload()
    shop_page.locator("#aigc-support-widget >> .launcher").click()
    send(shop_page, "my card hasn't arrived")
    shop_page.locator("#aigc-support-widget >> .msg.assistant").first.wait_for()
    send(shop_page, "I want to talk to a human")
    handoff = shop_page.locator("#aigc-support-widget >> .msg.assistant[data-action=handoff]")
    handoff.wait_for()
    ticket_id = handoff.inner_text().split("ticket ")[1].split(")")[0]

    studio = context.new_page()
    studio.set_default_timeout(30_000)
    studio.goto(support_server.url + "/")
    studio.wait_for_selector("body[data-ready='true']")
    studio.click(".nav-button[data-view=support]")
    assert studio.locator("#view-support").is_visible() and studio.locator("#view-create").is_hidden()
    item = studio.locator(f".support-ticket[data-ticket='{ticket_id}']")
    item.wait_for()
    assert "Alice Chen" in item.inner_text()
    item.click()
    assert "asked for a person" in studio.locator(".support-summary").inner_text()
    turns = studio.locator(".support-transcript .turn.customer .text").all_inner_texts()
    assert turns == ["my card hasn't arrived", "I want to talk to a human"]
    studio.locator(".support-profile").filter(has_text="Premium").wait_for()
    studio.fill("#support-reply", "Hello Alice, Sam here: your new card was posted today.")
    studio.click("#support-send")
    studio.locator(".support-empty").wait_for()  # answered tickets leave the waiting queue

    agent = shop_page.locator("#aigc-support-widget >> .msg.agent")
    agent.wait_for()
    assert "your new card was posted today" in agent.inner_text()
