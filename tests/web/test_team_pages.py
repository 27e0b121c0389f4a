"""Team pages through the app (TestClient): a student creates a team, a classmate joins it by
code, members see each other by display name only, leaving and the staff list; every form
needs its CSRF token, refusals come back as the page with the reason, escaped."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from grader_api.app import create_app
from tests.service.conftest import embedded_settings, seed_users
from tests.service.helpers import DISPLAY_NAMES, auth, make_split, predictions_csv, task_yaml, upload, wait_for_status


@pytest.fixture
def site(tmp_path):
    """Embedded app: prof, alice, bob; task 'pets' with teams of two."""
    settings = embedded_settings(tmp_path)
    labels = make_split(settings.effective_data_root, "pets/test", n=200)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        tokens = seed_users(client.app)
        r = client.post("/api/v1/tasks", content=task_yaml(extra="team_size: 2\n"),
                        headers={**auth(tokens["prof"]), "Content-Type": "application/yaml"})
        assert r.status_code == 201, r.text
        client.labels = labels
        client.tokens = tokens
        yield client


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def login(client, who: str) -> str:
    """Log `who` in; returns the CSRF token of their session."""
    client.cookies.clear()
    form = client.get("/login")
    r = client.post("/login", data={"token": client.tokens[who], "csrf_token": csrf_of(form.text), "next": "/"},
                    follow_redirects=False)
    assert r.status_code == 303
    return csrf_of(client.get("/tasks/pets/team").text)


def create(client, csrf: str, name: str = "otters"):
    return client.post("/tasks/pets/team/create?course=default", data={"team_name": name, "csrf_token": csrf},
                       follow_redirects=False)


def join(client, csrf: str, code: str):
    return client.post("/teams/join", data={"code": code, "csrf_token": csrf, "task": "pets", "course": "default"},
                       follow_redirects=False)


def code_on(html: str) -> str:
    m = re.search(r'<code id="join-code">([^<]+)</code>', html)
    assert m, "no join code on the page"
    return m.group(1)


def test_create_join_see_members_by_display_name_and_leave(site):
    csrf = login(site, "alice")
    page = site.get("/tasks/pets/team")
    assert page.status_code == 200 and 'id="create-team"' in page.text and 'id="join-team"' in page.text
    r = create(site, csrf)
    assert r.status_code == 303 and r.headers["location"] == "/tasks/pets/team?course=default&done=created"
    page = site.get(r.headers["location"])
    assert "Team created" in page.text and "otters" in page.text
    code = code_on(page.text)

    csrf = login(site, "bob")
    r = join(site, csrf, code)
    assert r.status_code == 303 and r.headers["location"].endswith("done=joined")
    page = site.get(r.headers["location"])
    members = re.search(r'<ul id="members">(.*?)</ul>', page.text, flags=re.S).group(1)
    assert DISPLAY_NAMES["alice"] in members and DISPLAY_NAMES["bob"] in members
    assert "alice" not in members.replace(DISPLAY_NAMES["alice"], "")
    assert 'id="leave"' in page.text

    r = site.post("/tasks/pets/team/leave?course=default", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("done=left")
    assert 'id="create-team"' in site.get(r.headers["location"]).text


def test_forms_need_their_csrf_token(site):
    login(site, "alice")
    for path, data in (("/tasks/pets/team/create", {"team_name": "otters"}), ("/teams/join", {"code": "A" * 22}),
                       ("/tasks/pets/team/leave", {})):
        r = site.post(path, data={**data, "csrf_token": "forged"}, follow_redirects=False)
        assert r.status_code == 403 and "form expired" in r.text
    assert site.get("/api/v1/tasks/pets/team", headers=auth(site.tokens["alice"])).json()["team"] is None


def test_a_refused_name_comes_back_escaped_and_nothing_is_stored(site):
    csrf = login(site, "alice")
    r = create(site, csrf, "<b>otters</b>")
    assert r.status_code == 422 and 'class="flash error"' in r.text
    assert "<b>otters</b>" not in r.text and "team name: the name contains" in r.text
    assert site.get("/api/v1/tasks/pets/team", headers=auth(site.tokens["alice"])).json()["team"] is None


def test_wrong_codes_are_refused_then_rate_limited(site):
    csrf = login(site, "bob")
    for _ in range(10):
        r = join(site, csrf, "Z" * 22)
        assert r.status_code == 404 and "team with that join code not found" in r.text
    r = join(site, csrf, "Z" * 22)
    assert r.status_code == 429 and "too many wrong join codes" in r.text


def test_leaving_after_a_scored_submission_is_refused_on_the_page(site):
    csrf = login(site, "alice")
    create(site, csrf)
    r = upload(site, site.tokens["alice"], "pets", predictions_csv(site.labels, 0.6))
    assert wait_for_status(site, site.tokens["alice"], r.json()["id"])["status"] == "scored"
    page = site.get("/tasks/pets/team")
    assert 'id="locked"' in page.text and 'id="leave"' not in page.text
    r = site.post("/tasks/pets/team/leave?course=default", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 409 and "can no longer leave" in r.text

    board = site.get("/tasks/pets")
    assert 'id="team-link"' in board.text and 'id="teams-link"' not in board.text
    row = re.findall(r'<tr class="mine"[^>]*>.*?</tr>', board.text, flags=re.S)
    assert len(row) == 1 and "otters" in row[0] and DISPLAY_NAMES["alice"] not in row[0]


def test_staff_list_create_move_and_dissolve(site):
    csrf = login(site, "alice")
    create(site, csrf)
    assert site.get("/instructor/tasks/pets/teams").status_code == 403

    csrf = login(site, "prof")
    assert 'id="teams-link"' in site.get("/tasks/pets").text
    r = site.post("/instructor/tasks/pets/teams?course=default",
                  data={"team_name": "herons", "members": "bob", "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    page = site.get(r.headers["location"])
    assert page.status_code == 200 and "herons" in page.text and "otters" in page.text
    ids = dict((name, int(tid)) for tid, name in re.findall(
        r'action="/instructor/teams/(\d+)" class="filters">.*?placeholder="([^"]+)"', page.text, flags=re.S))
    r = site.post(f"/instructor/teams/{ids['herons']}", data={"add": "alice", "csrf_token": csrf},
                  follow_redirects=False)
    assert r.status_code == 303   # alice moved from otters to herons
    teams = site.get("/api/v1/tasks/pets/teams", headers=auth(site.tokens["prof"])).json()
    assert {t["name"]: sorted(m["login"] for m in t["members"]) for t in teams} == {
        "herons": ["alice", "bob"], "otters": []}
    r = site.post(f"/instructor/teams/{ids['otters']}", data={"add": "carol", "csrf_token": csrf})
    assert r.status_code == 422 and "not an active member" in r.text
    r = site.post(f"/instructor/teams/{ids['herons']}", data={"team_name": "<i>", "csrf_token": csrf})
    assert r.status_code == 422 and "<i>" not in r.text
    r = site.post(f"/instructor/teams/{ids['herons']}", data={"dissolve": "1", "csrf_token": csrf},
                  follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("done=removed")
    assert [t["name"] for t in site.get("/api/v1/tasks/pets/teams", headers=auth(site.tokens["prof"])).json()] \
        == ["otters"]
