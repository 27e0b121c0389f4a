"""Headless Chromium (system package, driven by Playwright) against `grade serve --demo`:
log in, leaderboard, tabs, a submission with its SVG chart and confusion matrix, the
segmentation bars, history, the instructor page, phone width. Screenshots go to
test-output/screenshots/."""

from __future__ import annotations

import re

import httpx
import pytest

from scoring.tasks import load_task
from tests.web.live_server import CHROMIUM, REPO, SHOTS, running_server, wait_scored

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


def login(browser, demo, who: str, width: int = 1100, height: int = 800):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(f"{demo.url}/tasks/cifar10")
    assert "/login" in page.url  # not logged in: sent to the form, and back afterwards
    page.fill("#token", demo.tokens[who])
    page.click("button[type=submit]")
    page.wait_for_url(f"{demo.url}/tasks/cifar10")
    return page


def fits_width(page, selector: str) -> bool:
    """Shown, inside the viewport's width, and its text inside its own box: readable without
    scrolling sideways."""
    el = page.locator(selector)
    box = el.bounding_box() if el.is_visible() else None
    return (box is not None and box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"] + 0.5
            and el.evaluate("e => e.scrollWidth <= e.clientWidth + 1"))


def page_overflow(page) -> float:
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def stray_values(page) -> list[str]:
    """Python/JSON placeholders leaking into the text a person reads."""
    return re.findall(r"\b(?:None|null|NaN)\b", page.inner_text("main"))


def cifar10_classes() -> list[str]:
    return list(load_task(REPO / "datasets" / "cifar10.yaml").classes)


def display_name(demo, who: str) -> str:
    me = httpx.get(f"{demo.url}/api/v1/me", headers={"Authorization": f"Bearer {demo.tokens[who]}"}).json()
    return me["courses"][0]["display_name"]


def own_submission(demo, who: str, task: str) -> int:
    rows = httpx.get(f"{demo.url}/api/v1/me/submissions", params={"task": task},
                     headers={"Authorization": f"Bearer {demo.tokens[who]}"}).json()["submissions"]
    return rows[-1]["id"]


def test_student_leaderboard_tabs_submission_and_charts(browser, demo) -> None:
    page = login(browser, demo, "alice")
    mine = page.locator("#leaderboard tr.mine")
    # her row, under the display name the demo gave her (students never see each other's logins)
    assert mine.count() == 1 and display_name(demo, "alice") in mine.inner_text()
    assert "alice" not in page.inner_text("#leaderboard")
    page.screenshot(path=str(SHOTS / "leaderboard-public.png"), full_page=True)

    assert page.locator("#toggle-classes").count() == 0  # no per-class columns on the public board (D9)
    assert page.locator("#leaderboard thead th").count() == 5
    page.click("#leaderboard thead th:nth-child(2) a")  # sort by name
    assert "sort=name" in page.url

    page.click("#tab-private")  # before the deadline: hidden from students
    assert "shown to everyone once the task closes" in page.inner_text("main")
    page.screenshot(path=str(SHOTS / "leaderboard-private-locked.png"), full_page=True)
    page.click("#tab-public")

    page.click("#leaderboard tr.mine td:nth-child(2) a")  # own row links to the counted submission
    page.wait_for_url("**/submissions/*")
    assert page.inner_text("#status") == "scored"
    # before the task closes: the public score without its per-class breakdown (D9)
    assert page.locator("#detail-withheld").count() == 1
    assert page.locator("#per-class-chart").count() == 0 and page.locator("#confusion-matrix").count() == 0
    assert page.locator("#most-confused").count() == 0
    page.screenshot(path=str(SHOTS / "submission-classification.png"), full_page=True)

    page.goto(f"{demo.url}/submissions/{own_submission(demo, 'alice', 'segmentation6')}")
    assert page.locator("#detail-withheld").count() == 1 and page.locator("#per-class-chart").count() == 0
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
    # staff see the login, with the display name next to it
    assert set(page.locator("#submissions tbody td:nth-child(2)").all_inner_texts()) == {
        f"bob {display_name(demo, 'bob')}"}
    page.click("#rescore")  # CSRF-protected POST, then back with a message
    assert "Re-queued" in page.inner_text(".flash")
    page.screenshot(path=str(SHOTS / "instructor.png"), full_page=True)
    for task, cells in (("cifar10", 100), ("segmentation6", 0)):  # the whole split, with its charts
        page.goto(f"{demo.url}/submissions/{own_submission(demo, 'alice', task)}")
        page.wait_for_selector("#per-class-chart svg")
        assert page.locator("#confusion-matrix svg rect.cell").count() == cells
    page.close()

    phone = login(browser, demo, "alice", width=390)
    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1  # the table scrolls inside its box, the page does not
    phone.screenshot(path=str(SHOTS / "leaderboard-phone.png"), full_page=True)
    phone.close()


def test_student_on_a_phone_reads_the_withheld_note_and_the_public_board(browser, demo) -> None:
    # the longest display name there can be, so the board is checked at its widest
    r = httpx.put(f"{demo.url}/api/v1/courses/default/me/display-name", json={"display_name": "x" * 36 + "-bee"},
                  headers={"Authorization": f"Bearer {demo.tokens['alice']}"})
    assert r.status_code == 200, r.text
    phone = login(browser, demo, "alice", width=390, height=844)
    phone.goto(f"{demo.url}/submissions/{own_submission(demo, 'alice', 'cifar10')}")
    assert fits_width(phone, "#public-score")
    assert fits_width(phone, "#detail-withheld")  # the note wraps on the phone, and says why
    assert "would reveal which test items are public" in phone.inner_text("#detail-withheld")
    assert page_overflow(phone) <= 1 and stray_values(phone) == []
    phone.screenshot(path=str(SHOTS / "submission-withheld-phone.png"), full_page=True)

    phone.goto(f"{demo.url}/tasks/cifar10?classes=1")  # asking for class columns does not bring them back
    assert phone.locator("#leaderboard th.pc").count() == 0
    heads = [t.strip() for t in phone.locator("#leaderboard thead th").all_inner_texts()]
    assert heads[:3] == ["#", "Name", "accuracy"] and all(heads)
    for cell in ("#leaderboard thead th:nth-child(3)", "#leaderboard tr.mine td:nth-child(3)"):
        assert fits_width(phone, cell)  # rank, name and score readable without scrolling the table
    assert page_overflow(phone) <= 1 and stray_values(phone) == []
    phone.screenshot(path=str(SHOTS / "leaderboard-long-name-phone.png"), full_page=True)
    phone.close()


def test_class_columns_only_on_the_private_board(browser, demo) -> None:
    page = login(browser, demo, "alice", width=1280)
    page.goto(f"{demo.url}/tasks/cifar10?classes=1&sort=c0")
    heads = [t.strip() for t in page.locator("#leaderboard thead th").all_inner_texts()]
    assert len(heads) == 5 and all(heads) and not set(heads) & set(cifar10_classes())
    assert page.get_by_text("Per-class columns: on the private board, once the task closes.").is_visible()
    assert stray_values(page) == []
    page.close()

    prof = login(browser, demo, "prof", width=1280)
    prof.goto(f"{demo.url}/tasks/cifar10")
    prof.click("main p.small a:has-text('private board')")  # the instructor is pointed at the board that has them
    assert "board=private" in prof.url and "classes=1" in prof.url
    heads = prof.locator("#leaderboard thead th.pc")
    assert [t.strip() for t in heads.all_inner_texts()] == cifar10_classes()
    assert all(heads.nth(i).is_visible() for i in range(heads.count()))
    values = prof.locator("#leaderboard tbody td.pc").all_inner_texts()
    assert values and all(re.fullmatch(r"\d\.\d{3}|—", v.strip()) for v in values), values
    assert page_overflow(prof) <= 1 and stray_values(prof) == []
    prof.close()


def test_whole_split_scores_fit_a_phone(browser, demo) -> None:
    phone = login(browser, demo, "prof", width=390, height=844)
    phone.goto(f"{demo.url}/submissions/{own_submission(demo, 'alice', 'cifar10')}")
    phone.wait_for_selector("#per-class-chart svg")
    assert fits_width(phone, "#points") and re.fullmatch(r"\d+(\.\d{1,2})?/\d+(\.\d+)?", phone.inner_text("#points"))
    assert page_overflow(phone) <= 1 and stray_values(phone) == []
    phone.screenshot(path=str(SHOTS / "submission-instructor-phone.png"), full_page=True)
    phone.close()


def test_login_throttle_message_is_shown(browser, demo) -> None:
    """Last in the module: it leaves 127.0.0.1 throttled for unknown tokens (valid ones still work)."""
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    for _ in range(40):  # the limit is 20 failures a minute; bounded in case it changes
        phone.goto(f"{demo.url}/login")
        phone.fill("#token", "not-a-token")
        phone.click("button[type=submit]")
        phone.wait_for_selector(".flash.error")
        if "Too many failed log-ins" in phone.inner_text(".flash.error"):
            break
    assert "Too many failed log-ins from your address; try again in" in phone.inner_text(".flash.error")
    assert fits_width(phone, ".flash.error") and fits_width(phone, "#token")
    phone.screenshot(path=str(SHOTS / "login-throttled-phone.png"), full_page=True)
    phone.close()
