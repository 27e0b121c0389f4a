"""The course and account pages through the app (TestClient): the sign-in link (a GET never uses
the code; the POST does, once, with CSRF, and logs the browser in), the account page (display
names, token rotation), the staff roster (search, edits, upload, invites.csv), and escaping."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from grader_api.app import create_app
from tests.service.conftest import embedded_settings, seed_users
from tests.service.test_roster_api import seed


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def token_on(html: str) -> str:
    m = re.search(r'id="token" class="token" type="text" value="([^"]+)"', html)
    assert m, "no token on the page"
    return m.group(1)


@dataclass
class Site:
    client: TestClient
    tokens: dict[str, str]

    def login(self, who: str) -> None:
        self.client.cookies.clear()
        form = self.client.get("/login")
        r = self.client.post("/login", data={"token": self.tokens[who], "csrf_token": csrf_of(form.text)},
                             follow_redirects=False)
        assert r.status_code == 303, r.text

    def api(self, method: str, path: str, who: str, **kw):
        return self.client.request(method, f"/api/v1{path}", headers={"Authorization": f"Bearer {self.tokens[who]}",
                                                                      **kw.pop("headers", {})}, **kw)


def make_site(tmp_path: Path, **overrides) -> Site:
    settings = embedded_settings(tmp_path, **overrides)   # a migrated SQLite database under tmp_path
    client = TestClient(create_app(settings))
    client.__enter__()
    tokens = seed_users(client.app)
    tokens.update(seed(client.app))   # ml101: prof instructor, tara TA; cv201: vera, carl
    return Site(client, tokens)


@pytest.fixture
def site(tmp_path):
    s = make_site(tmp_path)
    yield s
    s.client.__exit__(None, None, None)


ROSTER = (b"name,email,section\r\n"
          b"\"Tom & \"\"Jerry\"\"\",tom@uni.edu,Lab 1\r\n"
          b"Ann Smith,ann@uni.edu,Lab 2\r\n")


def invite_links(site: Site) -> dict[str, str]:
    r = site.api("POST", "/courses/ml101/roster", "prof", content=ROSTER, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    rows = list(csv.reader(io.StringIO(site.api("POST", "/courses/ml101/invites", "prof").text)))[1:]
    return {row[1]: row[2].replace("http://testserver", "") for row in rows}


def test_opening_a_join_link_uses_nothing_and_signing_in_uses_it_once(site):
    path = invite_links(site)["ann@uni.edu"]
    site.client.cookies.clear()
    for _ in range(3):   # a mail scanner, a link preview, the student
        page = site.client.get(path)
        assert page.status_code == 200 and ">Sign in</button>" in page.text

    refused = site.client.post(path, data={"csrf_token": "forged"})
    assert refused.status_code == 403
    done = site.client.post(path, data={"csrf_token": csrf_of(page.text)})

    assert done.status_code == 200, done.text
    assert "Store this token now" in done.text and "no-store" in done.headers["cache-control"]
    token = token_on(done.text)
    assert site.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()["name"] == "ann@uni.edu"
    assert site.client.get("/account").status_code == 200          # this browser is logged in as her
    assert "ann@uni.edu" in site.client.get("/account").text

    again = site.client.post(path, data={"csrf_token": csrf_of(site.client.get(path).text)})
    assert again.status_code == 404 and "not valid" in again.text and token not in again.text


def test_a_malformed_or_unknown_code_gets_the_same_page(site):
    site.client.cookies.clear()
    assert site.client.get("/join/short").status_code == 404
    page = site.client.get("/join/" + "A" * 32)
    r = site.client.post("/join/" + "A" * 32, data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 404
    assert "this sign-in link is not valid" in r.text


def test_guessing_codes_is_rate_limited_per_address(tmp_path):
    site = make_site(tmp_path, auth_failure_limit="5/minute")
    try:
        path = invite_links(site)["ann@uni.edu"]
        site.client.cookies.clear()
        csrf = csrf_of(site.client.get(path).text)
        for i in range(5):
            assert site.client.post(f"/join/{'B' * 31}{i}", data={"csrf_token": csrf}).status_code == 404
        r = site.client.post(path, data={"csrf_token": csrf})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "Too many" in r.text
        # Refused before the code was looked at: it is still unused, and nobody has joined.
        import sqlalchemy as sa

        from grader_api.models import Invite

        with site.client.app.state.db.transaction() as s:
            assert s.scalar(sa.select(sa.func.count(Invite.id)).where(Invite.used_at.is_not(None))) == 0
        assert not any(m["joined"] for m in site.api("GET", "/courses/ml101/roster", "prof",
                                                     params={"role": "student"}).json()["members"])
    finally:
        site.client.__exit__(None, None, None)


def test_account_page_sets_display_names_and_escapes_what_it_echoes(site):
    site.login("alice")
    page = site.client.get("/account")
    assert page.status_code == 200 and 'href="/account"' in page.text
    csrf = csrf_of(page.text)

    r = site.client.post("/account/display-name", data={"csrf_token": csrf, "course": "default",
                                                         "display_name": "Deep Diver"}, follow_redirects=False)
    assert r.status_code == 303
    assert 'value="Deep Diver"' in site.client.get(r.headers["location"]).text

    r = site.client.post("/account/display-name", data={"csrf_token": csrf, "course": "default",
                                                         "display_name": "<img src=x onerror=alert(1)>"})
    assert r.status_code == 422 and "<img" not in r.text and "not allowed" in r.text
    taken = site.api("GET", "/me", "bob").json()["courses"][0]["display_name"]
    r = site.client.post("/account/display-name", data={"csrf_token": csrf, "course": "default",
                                                         "display_name": taken.upper()})
    assert r.status_code == 409 and "is taken" in r.text and "bob" not in r.text
    r = site.client.post("/account/display-name", data={"csrf_token": csrf, "course": "cv201",
                                                         "display_name": "Elsewhere"})
    assert r.status_code == 404
    r = site.client.post("/account/display-name", data={"course": "default", "display_name": "No Csrf"})
    assert r.status_code == 403


def test_rotating_the_token_from_the_account_page(site):
    site.login("alice")
    csrf = csrf_of(site.client.get("/account").text)

    unconfirmed = site.client.post("/account/token", data={"csrf_token": csrf})
    assert unconfirmed.status_code == 400 and "Tick the box" in unconfirmed.text
    assert site.api("GET", "/me", "alice").status_code == 200

    r = site.client.post("/account/token", data={"csrf_token": csrf, "confirm": "yes"})

    assert r.status_code == 200 and "Your new token" in r.text
    new = token_on(r.text)
    assert site.api("GET", "/me", "alice").status_code == 401
    assert site.client.get("/api/v1/me", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    after = site.client.get("/account")
    assert after.status_code == 200 and new not in after.text   # still logged in; shown once only


def test_the_staff_roster_page(site):
    site.api("POST", "/courses/ml101/roster", "prof", content=ROSTER, headers={"Content-Type": "text/csv"})

    site.login("prof")
    assert 'href="/instructor/courses"' in site.client.get("/instructor").text
    assert "/instructor/courses/ml101/roster" in site.client.get("/instructor/courses").text
    page = site.client.get("/instructor/courses/ml101/roster")
    assert page.status_code == 200
    assert "Tom &amp; &#34;Jerry&#34;" in page.text and 'Tom & "Jerry"' not in page.text
    assert 'enctype="multipart/form-data"' in page.text and "invites.csv" in page.text
    found = site.client.get("/instructor/courses/ml101/roster", params={"q": "lab 2"}).text
    assert "ann@uni.edu" in found and "tom@uni.edu" not in found

    csrf = csrf_of(page.text)
    r = site.client.post("/instructor/courses/ml101/members/ann%40uni.edu",
                         data={"csrf_token": csrf, "role": "ta", "status": "active", "section": "Lab 9"},
                         follow_redirects=False)
    assert r.status_code == 303
    ann = site.api("GET", "/courses/ml101/roster", "prof", params={"q": "ann"}).json()["members"][0]
    assert (ann["role"], ann["section"]) == ("ta", "Lab 9")
    r = site.client.post("/instructor/courses/ml101/members/prof",
                         data={"csrf_token": csrf, "role": "student", "status": "active", "section": ""})
    assert r.status_code == 409 and "only instructor" in r.text

    r = site.client.post("/instructor/courses/ml101/invites.csv", data={"csrf_token": csrf})
    assert r.status_code == 200 and r.text.startswith("student,email,link")
    assert site.client.post("/instructor/courses/ml101/invites.csv", data={}).status_code == 403


def test_uploading_a_roster_from_the_page(site):
    site.login("prof")
    csrf = csrf_of(site.client.get("/instructor/courses/ml101/roster").text)
    data = ROSTER + b"Bad <b>Name</b>,bad@uni.edu,\r\n"

    r = site.client.post("/instructor/courses/ml101/roster", data={"csrf_token": csrf},
                         files={"file": ("roster.csv", data, "text/csv")})

    assert r.status_code == 200, r.text
    assert "<b>2</b> added" in r.text and "line 4: name" in r.text and "<b>Name</b>" not in r.text
    r = site.client.post("/instructor/courses/ml101/roster", data={"csrf_token": csrf},
                         files={"file": ("roster.csv", b"shoe,size\r\n1,2\r\n", "text/csv")})
    assert r.status_code == 422 and "line 1" in r.text
    r = site.client.post("/instructor/courses/ml101/roster", data={"csrf_token": "forged"},
                         files={"file": ("roster.csv", ROSTER, "text/csv")})
    assert r.status_code == 403
    r = site.client.post("/instructor/courses/ml101/roster", data={"csrf_token": csrf},
                         files={"file": ("big.csv", b"x" * (3 * 1024 * 1024), "text/csv")})
    assert r.status_code == 413 and "too large" in r.text


@pytest.mark.parametrize(("who", "status"), [("tara", 200), ("alice", 404), ("carl", 404), ("vera", 404)])
def test_who_sees_the_roster_page(site, who, status):
    site.login(who)
    r = site.client.get("/instructor/courses/ml101/roster")
    assert r.status_code == status
    if who == "tara":   # read-only for a TA
        assert "<form id=" not in r.text and 'enctype="multipart/form-data"' not in r.text
        csrf = csrf_of(r.text)
        assert site.client.post("/instructor/courses/ml101/members/tara",
                                data={"csrf_token": csrf, "role": "instructor"}).status_code == 403
        assert site.client.post("/instructor/courses/ml101/invites.csv", data={"csrf_token": csrf}).status_code == 403
        assert site.client.post("/instructor/courses/ml101/roster", data={"csrf_token": csrf},
                                files={"file": ("r.csv", ROSTER, "text/csv")}).status_code == 403


def test_pages_need_a_login(site):
    site.client.cookies.clear()
    for path in ("/account", "/instructor/courses", "/instructor/courses/ml101/roster"):
        r = site.client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
