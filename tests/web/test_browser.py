"""Headless Chromium (system package, driven by Playwright) against `grade serve --demo`:
log in, leaderboard, tabs, a submission with its SVG chart and confusion matrix, the
segmentation bars, history, the instructor page, phone width. Screenshots go to
test-output/screenshots/."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.web.live_server import REPO, running_server, wait_scored

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "test-output" / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs the system Chromium at /usr/bin/chromium "
                                                      "(apt-get install -y chromium chromium-driver)"),
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("browser") / "var", demo=True) as server:
        for task in ("cifar10", "segmentation6"):
            wait_scored(server.url, server.tokens["alice"], task, 3)
        yield server


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


def login(browser, demo, who: str, width: int = 1100):
    page = browser.new_page(viewport={"width": width, "height": 800})
    page.goto(f"{demo.url}/tasks/cifar10")
    assert "/login" in page.url  # not logged in: sent to the form, and back afterwards
    page.fill("#token", demo.tokens[who])
    page.click("button[type=submit]")
    page.wait_for_url(f"{demo.url}/tasks/cifar10")
    return page


def own_submission(demo, who: str, task: str) -> int:
    rows = httpx.get(f"{demo.url}/api/v1/me/submissions", params={"task": task},
                     headers={"Authorization": f"Bearer {demo.tokens[who]}"}).json()["submissions"]
    return rows[-1]["id"]


def test_student_leaderboard_tabs_submission_and_charts(browser, demo) -> None:
    page = login(browser, demo, "alice")
    mine = page.locator("#leaderboard tr.mine")
    assert mine.count() == 1 and "alice" in mine.inner_text()
    page.screenshot(path=str(SHOTS / "leaderboard-public.png"), full_page=True)

    page.click("#toggle-classes")  # per-class columns
    assert page.locator("#leaderboard thead th").count() == 5 + 10
    page.click("#leaderboard thead th:nth-child(2) a")  # sort by name
    assert "sort=name" in page.url

    page.click("#tab-private")  # before the deadline: hidden from students
    assert "shown to everyone once the task closes" in page.inner_text("main")
    page.screenshot(path=str(SHOTS / "leaderboard-private-locked.png"), full_page=True)
    page.click("#tab-public")

    page.click("#leaderboard tr.mine td:nth-child(2) a")  # own row links to the counted submission
    page.wait_for_url("**/submissions/*")
    assert page.inner_text("#status") == "scored"
    assert page.locator("#per-class-chart svg rect.bar").count() == 10
    assert page.locator("#confusion-matrix svg rect.cell").count() == 100
    assert page.locator("#most-confused tbody tr").count() >= 1
    page.screenshot(path=str(SHOTS / "submission-classification.png"), full_page=True)

    page.goto(f"{demo.url}/submissions/{own_submission(demo, 'alice', 'segmentation6')}")
    bars = page.locator("#per-class-chart svg")
    assert "AP" in bars.inner_html() and "IoU" in bars.inner_html()
    assert page.locator("#confusion-matrix").count() == 0
    page.screenshot(path=str(SHOTS / "submission-segmentation.png"), full_page=True)

    page.goto(f"{demo.url}/tasks/cifar10/history")
    assert page.locator("#score-chart svg circle.point").count() == 3
    assert "+BatchNorm" in page.inner_text("#history")
    page.screenshot(path=str(SHOTS / "history.png"), full_page=True)

    # someone else's submission: not found, like the API
    page.goto(f"{demo.url}/submissions/{own_submission(demo, 'bob', 'cifar10')}")
    assert "not found" in page.inner_text("main")
    page.close()


def test_instructor_pages_and_phone_width(browser, demo) -> None:
    page = login(browser, demo, "prof")
    page.click("#tab-private")  # instructors see the private board before the deadline
    assert page.locator("#leaderboard tbody tr").count() == 2
    page.goto(f"{demo.url}/instructor/tasks/cifar10")
    assert page.locator("svg.histogram").count() == 2
    page.select_option("select[name=student]", "bob")
    page.click("form.filters button")
    assert set(page.locator("#submissions tbody td:nth-child(2)").all_inner_texts()) == {"bob"}
    page.click("#rescore")  # CSRF-protected POST, then back with a message
    assert "Re-queued" in page.inner_text(".flash")
    page.screenshot(path=str(SHOTS / "instructor.png"), full_page=True)
    page.close()

    phone = login(browser, demo, "alice", width=390)
    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1  # the table scrolls inside its box, the page does not
    phone.screenshot(path=str(SHOTS / "leaderboard-phone.png"), full_page=True)
    phone.close()
