"""HTML pages through the app (TestClient): log-in with a token, the session cookie and CSRF,
who sees what (same rules as the API), sorting, per-class columns, charts, instructor actions."""

from __future__ import annotations

import re

import pytest


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def login(client, token: str, next_url: str = "/"):
    client.cookies.clear()
    form = client.get("/login")
    return client.post("/login", data={"token": token, "csrf_token": csrf_of(form.text), "next": next_url},
                       follow_redirects=False)


@pytest.fixture
def as_alice(web):
    assert login(web.client, web.tokens["alice"]).status_code == 303
    yield web.client
    web.client.cookies.clear()


@pytest.fixture
def as_prof(web):
    assert login(web.client, web.tokens["prof"]).status_code == 303
    yield web.client
    web.client.cookies.clear()


def test_pages_need_login_and_come_back_after_it(web) -> None:
    c = web.client
    c.cookies.clear()
    r = c.get("/tasks/pets?board=public", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Ftasks%2Fpets%3Fboard%3Dpublic"
    r = login(c, web.tokens["alice"], "/tasks/pets?board=public")
    assert r.status_code == 303 and r.headers["location"] == "/tasks/pets?board=public"


def test_session_cookie_flags_and_no_raw_token(web) -> None:
    r = login(web.client, web.tokens["alice"])
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Path=/" in cookie
    assert web.tokens["alice"] not in cookie


def test_login_rejects_bad_token_and_missing_csrf(web) -> None:
    c = web.client
    c.cookies.clear()
    form = c.get("/login")
    r = c.post("/login", data={"token": "nope", "csrf_token": csrf_of(form.text)})
    assert r.status_code == 401 and "not valid" in r.text
    r = c.post("/login", data={"token": web.tokens["alice"], "csrf_token": "forged"})
    assert r.status_code == 403 and "form expired" in r.text
    assert c.get("/", follow_redirects=False).status_code == 303  # still logged out


def test_login_next_is_never_an_open_redirect(web) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        r = login(web.client, web.tokens["alice"], target)
        assert r.headers["location"] == "/"


def test_leaderboard_highlights_viewer_and_hides_private_board(as_alice) -> None:
    r = as_alice.get("/tasks/pets")
    assert r.status_code == 200
    mine = re.findall(r'<tr class="mine"[^>]*>.*?</tr>', r.text, flags=re.S)
    assert len(mine) == 1 and "quiet-otter-11" in mine[0] and "alice" not in mine[0]
    assert "Content-Security-Policy" in r.headers and "script-src 'none'" in r.headers["Content-Security-Policy"]
    r = as_alice.get("/tasks/pets?board=private")
    assert r.status_code == 403 and "once the task closes" in r.text and 'id="leaderboard"' not in r.text


def test_leaderboard_sorting_and_per_class_columns(as_alice) -> None:
    names = lambda html: re.findall(r'<td>(?:<a href="/submissions/\d+">)?([a-z]+-[a-z]+-\d+)', html)  # noqa: E731
    assert names(as_alice.get("/tasks/pets?sort=name&dir=asc").text) == ["brave-lynx-22", "quiet-otter-11"]
    assert names(as_alice.get("/tasks/pets?sort=name&dir=desc").text) == ["quiet-otter-11", "brave-lynx-22"]
    # The public board has no per-class columns: they would show which items are public (D9).
    r = as_alice.get("/tasks/pets?classes=1&sort=c0&dir=desc")
    head = r.text.split("<tbody>")[0]
    assert not any(f">{c}</a></th>" in head for c in ("cat", "dog", "bird"))
    assert 'id="toggle-classes"' not in r.text and "Per-class columns: on the private board" in r.text


def test_instructor_sees_private_board(as_prof) -> None:
    r = as_prof.get("/tasks/pets?board=private")
    assert r.status_code == 200 and 'id="leaderboard"' in r.text
    r = as_prof.get("/tasks/pets?board=private&classes=1&sort=c0&dir=desc")
    head = r.text.split("<tbody>")[0]
    assert all(f">{c}</a></th>" in head for c in ("cat", "dog", "bird")) and "per-class accuracy" in r.text


def test_submission_page_has_charts_and_access_rules(web, as_alice) -> None:
    r = as_alice.get(f"/submissions/{web.ids['alice'][1]}")
    assert r.status_code == 200
    # Public part only, without its per-class breakdown (D9); the score and a note why.
    assert 'class="chart bar-chart"' not in r.text and 'class="chart heatmap"' not in r.text
    assert 'id="most-confused"' not in r.text and 'id="detail-withheld"' in r.text
    assert 'id="public-score"' in r.text
    assert "+BatchNorm" in r.text and "shown after the task closes" in r.text
    assert 'http-equiv="refresh"' not in r.text
    r = as_alice.get(f"/submissions/{web.ids['bob'][0]}")
    assert r.status_code == 404 and "not found" in r.text
    assert login(web.client, web.tokens["prof"]).status_code == 303
    r = web.client.get(f"/submissions/{web.ids['alice'][1]}")  # the whole split, with its charts
    assert 'class="chart bar-chart"' in r.text and 'class="chart heatmap"' in r.text
    assert r.text.count('class="cell"') == 9 and 'id="most-confused"' in r.text


def test_pending_submission_page_refreshes_itself(web, as_alice) -> None:
    from grader_api.models import Submission, SubmissionStatus

    sid = web.ids["alice"][0]
    db = web.client.app.state.db
    with db.transaction() as s:
        s.get(Submission, sid).status = SubmissionStatus.RUNNING
    try:
        r = as_alice.get(f"/submissions/{sid}")
        assert '<meta http-equiv="refresh" content="2">' in r.text and "Scoring" in r.text
    finally:
        with db.transaction() as s:
            s.get(Submission, sid).status = SubmissionStatus.SCORED


def test_history_page_chart_and_ablation_table(as_alice) -> None:
    r = as_alice.get("/tasks/pets/history")
    assert r.status_code == 200
    assert r.text.count('class="point"') == 2 and "baseline" in r.text and "+BatchNorm" in r.text
    assert 'class="num up"' in r.text  # the second one improved


def test_instructor_pages_are_for_instructors(as_alice) -> None:
    assert as_alice.get("/instructor").status_code == 403
    assert as_alice.get("/instructor/tasks/pets").status_code == 403
    assert as_alice.get("/instructor/tasks/pets/grades.csv").status_code == 403


def test_instructor_filters_histogram_export_and_rescore(web, as_prof) -> None:
    r = as_prof.get("/instructor/tasks/pets?student=bob")
    assert r.status_code == 200 and r.text.count('class="chart histogram"') == 2
    rows = re.findall(r"<tr><td class=\"num\"><a href=\"/submissions/\d+\">\d+</a></td><td>(\w+) "
                      r"<span class=\"small muted\">([a-z0-9-]+)</span></td>", r.text)
    assert rows and set(rows) == {("bob", "brave-lynx-22")}  # staff see the login and the display name
    csv = as_prof.get("/instructor/tasks/pets/grades.csv")
    assert csv.headers["content-type"].startswith("text/csv") and csv.text.startswith("student,best_public")
    assert as_prof.post("/instructor/tasks/pets/rescore", data={"csrf_token": "forged"}).status_code == 403
    csrf = csrf_of(as_prof.get("/instructor/tasks/pets").text)
    r = as_prof.post("/instructor/tasks/pets/rescore", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and "done=rescore" in r.headers["location"]
    assert "Re-queued 3 submission(s)" in as_prof.get(r.headers["location"]).text
    from tests.web.conftest import _wait

    for who, sids in web.ids.items():
        for sid in sids:
            _wait(web.client, web.tokens[who], sid)


def test_logout_and_revoked_token_end_the_session(web) -> None:
    from grader_api.services.users import create_user, revoke

    c = web.client
    db = c.app.state.db
    with db.transaction() as s:
        token = create_user(s, "carol", "student")[1]
    login(c, token)
    assert c.get("/", follow_redirects=False).status_code == 200
    r = c.post("/logout", data={"csrf_token": csrf_of(c.get("/").text)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    c.cookies.clear()
    login(c, token)
    with db.transaction() as s:
        revoke(s, "carol")
    assert c.get("/", follow_redirects=False).status_code == 303
    c.cookies.clear()
