"""/api/v1/docs and /api/v1/redoc in headless Chromium on a machine without internet: both render
and list the API's operations, at desktop and phone width, fetching nothing from elsewhere."""

from __future__ import annotations

import pytest

from tests.web.live_server import CHROMIUM, SHOTS, running_server, seed_course
from tests.web.test_browser import page_overflow

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs the system Chromium at /usr/bin/chromium "
                                                      "(apt-get install -y chromium chromium-driver)"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    var = tmp_path_factory.mktemp("docs") / "var"
    seed_course(var)
    with running_server(var) as s:
        yield s


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)])
def test_swagger_ui_lists_the_operations_offline(browser, server, width, height):
    page = browser.new_page(viewport={"width": width, "height": height})
    outside: list[str] = []
    page.on("request", lambda req: outside.append(req.url) if not req.url.startswith(server.url) else None)
    page.goto(f"{server.url}/api/v1/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert any("/api/v1/tasks/{task}/submissions" in p.replace("\u200b", "") for p in paths), paths[:5]
    assert page.locator(".opblock").first.is_visible()
    assert outside == [], outside  # nothing fetched from anywhere else
    assert page_overflow(page) <= 1
    page.screenshot(path=str(SHOTS / f"api-docs-{width}.png"))
    page.goto(f"{server.url}/api/v1/redoc")
    page.wait_for_function("document.body.innerText.includes('/tasks/{task}/submissions')", timeout=30_000)
    # ReDoc's bundle asks its CDN for the small "powered by" logo in the sidebar; offline that one
    # image is missing and the page is whole. blob: URLs are ReDoc's own in-page workers.
    elsewhere = [u for u in outside if not u.startswith("blob:") and u != "https://cdn.redoc.ly/redoc/logo-mini.svg"]
    assert elsewhere == [], elsewhere
    page.screenshot(path=str(SHOTS / f"api-redoc-{width}.png"))
    page.close()
