"""/docs and /redoc work on a machine without internet: every file they load is served by us."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from tests.e2e import test_web_page as web
from tests.e2e.serverproc import Server, start_server, stop_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Route

pytestmark = pytest.mark.e2e

# Reused, not redefined: the module-scoped headless Chromium of the web-page tests.
browser = web.browser


@pytest.fixture
def bare_server(ctx, tmp_path: Path) -> Iterator[Server]:
    """A server with no model yet: the docs describe the API whatever is registered."""
    running = start_server(ctx.settings, tmp_path)
    yield running
    stop_server(running)


def _referenced_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_reference_only_files_served_by_the_server(
    bare_server: Server, path: str
) -> None:
    with bare_server.client() as http:
        page = http.get(path)
        assert page.status_code == 200
        urls = _referenced_urls(page.text)
        assert urls, f"{path} references no script or style at all"
        for url in urls:
            assert not urlsplit(url).netloc, f"{path} loads {url} from another host"
            served = http.get(url)
            assert served.status_code == 200, f"{path} references {url}: {served.status_code}"
            assert len(served.content) > 0
        assert "fonts.googleapis" not in page.text


# ReDoc's sidebar always asks its vendor's CDN for a small logo and drops the <img> when that
# fails (its onError handler); nothing else it shows depends on the request.
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@dataclass
class OfflinePage:
    """A browser page whose requests to any host but our server fail as if offline."""

    page: Page
    blocked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@contextmanager
def offline_page(browser: Browser, server: Server) -> Iterator[OfflinePage]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = OfflinePage(context.new_page())
    opened.page.set_default_timeout(web.WAIT_MS)

    def only_our_server(route: Route) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            opened.blocked.append(route.request.url)
            route.abort("internetdisconnected")

    def console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            opened.problems.append(f"console error: {msg.text} at {msg.location.get('url')}")

    context.route("**/*", only_our_server)
    opened.page.on("pageerror", lambda exc: opened.problems.append(f"script error: {exc}"))
    opened.page.on("console", console)
    try:
        yield opened
    finally:
        context.close()


def test_swagger_ui_renders_the_operations_with_the_network_cut_off(
    bare_server: Server, browser: Browser
) -> None:
    with offline_page(browser, bare_server) as opened:
        page = opened.page
        page.goto(f"{bare_server.url}/docs")
        page.wait_for_selector(".opblock-summary-path[data-path='/predict']")
        paths = page.eval_on_selector_all(
            ".opblock-summary-path", "els => els.map(e => e.getAttribute('data-path'))"
        )
        assert {"/predict", "/feedback", "/health"} <= set(paths)
        assert "pgmlops" in page.inner_text(".info .title")
    assert opened.blocked == [], f"/docs tried to reach other hosts: {opened.blocked}"
    assert opened.problems == []


def test_redoc_renders_the_operations_with_the_network_cut_off(
    bare_server: Server, browser: Browser
) -> None:
    with offline_page(browser, bare_server) as opened:
        page = opened.page
        page.goto(f"{bare_server.url}/redoc")
        page.wait_for_selector("h1")
        assert "pgmlops" in page.inner_text("h1")
        operations = page.eval_on_selector_all(
            "[data-section-id^='operation/']", "els => els.length"
        )
        assert operations >= 3
        assert page.get_by_text("/predict").count() > 0
        # The logo <img> is gone once its request failed: the sidebar shows no broken image.
        page.wait_for_function("() => !document.querySelector('img[alt=\"redocly logo\"]')")
    assert set(opened.blocked) <= {REDOC_LOGO}, f"/redoc reached other hosts: {opened.blocked}"
    assert [p for p in opened.problems if REDOC_LOGO not in p] == []
