"""The course pages as a person sees them, in headless Chromium at 1280×800 and 390×844: the
join link, the account page, the staff roster, a task's team page and the staff team list.
Each test checks that what matters is visible inside the viewport (not only present in the HTML)
and that the page does not scroll sideways. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import csv
import io

import httpx
import pytest

from tests.web.live_server import CHROMIUM, SHOTS, running_server, wait_scored
from tests.web.test_browser import page_overflow, stray_values

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs the system Chromium at /usr/bin/chromium "
                                                      "(apt-get install -y chromium chromium-driver)"),
]

SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
# A Canvas export: the demo's students, and two newcomers who have no token yet (so get invites).
ROSTER = ("Student,ID,SIS User ID,SIS Login ID,Section\n"
          "\"Smith, Alice\",101,S101,alice,Lab 1\n\"Jones, Bob\",102,S102,bob,Lab 2\n"
          "\"Ng, Nina\",103,S103,nina,Lab 1\n\"Okafor, Omar\",104,S104,omar,Lab 2\n")
TEAM_TASK = "cifar10-teams"


def _api(demo, who: str, method: str, path: str, headers: dict | None = None, **kw) -> httpx.Response:
    headers = {"Authorization": f"Bearer {demo.tokens[who]}", **(headers or {})}
    return httpx.request(method, f"{demo.url}/api/v1{path}", headers=headers, timeout=60, **kw)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("browser-courses") / "var", demo=True) as server:
        wait_scored(server.url, server.tokens["alice"], "cifar10", 1)
        r = _api(server, "prof", "POST", "/courses/default/roster", content=ROSTER.encode(),
                 headers={"Content-Type": "text/csv"})
        assert r.status_code == 200 and r.json()["added"] == 2, r.text
        r = _api(server, "prof", "POST", "/tasks", json={"yaml": _team_task_yaml()})
        assert r.status_code == 201, r.text
        yield server


def _team_task_yaml() -> str:
    from tests.web.live_server import REPO

    text = (REPO / "datasets" / "cifar10.yaml").read_text()
    return text.replace("name: cifar10", f"name: {TEAM_TASK}", 1) + "\nteam_size: 2\n"


def _page(browser, demo, who: str | None, size: str):
    width, height = SIZES[size]
    page = browser.new_page(viewport={"width": width, "height": height})
    if who is not None:
        page.goto(f"{demo.url}/login")
        page.fill("#token", demo.tokens[who])
        page.click("button[type=submit]")
        page.wait_for_load_state()
    return page


def _in_view(page, selector: str) -> bool:
    """Visible and horizontally inside the viewport (a person sees it without scrolling sideways)."""
    el = page.locator(selector).first
    box = el.bounding_box() if el.is_visible() else None
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"] + 0.5


def _readable(page, shot: str) -> None:
    page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)  # first: a failure leaves the picture
    assert page_overflow(page) <= 1, f"{shot}: the page scrolls sideways"
    assert stray_values(page) == [], shot


@pytest.mark.parametrize("size", SIZES)
def test_a_join_link_shows_a_button_then_the_token_once(browser, demo, size):
    r = _api(demo, "prof", "POST", "/courses/default/invites")
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    newcomer = {"desktop": "Ng, Nina", "phone": "Okafor, Omar"}[size]  # each link works once
    nina = next(row for row in rows if row["student"] == newcomer)
    page = _page(browser, demo, None, size)
    page.goto(nina["link"])
    button = "form[action^='/join/'] button"
    assert _in_view(page, "h1") and _in_view(page, button)
    _readable(page, f"join-{size}")
    page.click(button)
    page.wait_for_selector("#token")
    token = page.input_value("#token")
    assert len(token) > 20 and _in_view(page, "#token")  # shown once, readable, copyable
    _readable(page, f"join-done-{size}")
    page.goto(nina["link"])  # a used link signs nobody in
    page.click(button)
    assert page.locator("#token").count() == 0 and _in_view(page, "[role=alert]")
    page.close()


@pytest.mark.parametrize("size", SIZES)
def test_account_page_changes_the_display_name(browser, demo, size):
    page = _page(browser, demo, "bob", size)
    page.goto(f"{demo.url}/account")
    field = "input[name=display_name]"
    page.screenshot(path=str(SHOTS / f"account-before-{size}.png"), full_page=True)
    save = "form[action='/account/display-name'] button"
    assert _in_view(page, field) and _in_view(page, save) and _in_view(page, "form[action='/account/token'] button")
    new = f"bob-{size}-name"
    page.fill(field, new)
    page.click("form[action='/account/display-name'] button")
    page.wait_for_load_state()
    assert page.input_value(field) == new
    _readable(page, f"account-{size}")
    page.goto(f"{demo.url}/tasks/cifar10?course=default")
    assert "Jones" not in page.inner_text("main")  # real names stay with the staff
    page.close()


@pytest.mark.parametrize("size", SIZES)
def test_staff_roster_page_lists_and_searches_the_course(browser, demo, size):
    page = _page(browser, demo, "prof", size)
    page.goto(f"{demo.url}/instructor/courses/default/roster?q=nina")
    text = page.inner_text("main")
    assert "Ng, Nina" in text and "Smith, Alice" not in text  # the search narrows the list ...
    assert "active students 4" in text and "shown 1" in text  # ... not the course's count
    assert _in_view(page, "form.filters input[name=q]")
    _readable(page, f"roster-{size}")
    page.close()


@pytest.mark.parametrize("size", SIZES)
def test_team_page_creates_a_team_and_shows_its_code(browser, demo, size):
    who = "alice" if size == "desktop" else "bob"
    page = _page(browser, demo, who, size)
    page.goto(f"{demo.url}/tasks/{TEAM_TASK}/team?course=default")
    assert _in_view(page, "#create-team button") and _in_view(page, "#join-team button")
    _readable(page, f"team-empty-{size}")
    page.fill("#team_name", f"team-{size}")
    page.click("#create-team button")
    page.wait_for_selector("#join-code")
    assert _in_view(page, "#join-code") and _in_view(page, "#members")
    _readable(page, f"team-{size}")
    page.close()

    staff = _page(browser, demo, "prof", size)
    staff.goto(f"{demo.url}/instructor/tasks/{TEAM_TASK}/teams?course=default")
    assert f"team-{size}" in staff.inner_text("#teams")
    assert _in_view(staff, "#create-team button")
    _readable(staff, f"teams-staff-{size}")
    staff.close()
