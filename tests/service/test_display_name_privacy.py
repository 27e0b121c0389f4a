"""Students see each other only by display name.

Students with real names, emails and SIS ids come in through a roster import, join through their
invites and submit; then every page and JSON response a student can reach is fetched as one of
them and searched for the other students' logins, real names (and each part of them), emails and
LMS ids. None may appear. The same data is checked to be there for staff, so the search is not
vacuous.
"""

from __future__ import annotations

import csv
import io
import re

import pytest

from tests.service.helpers import auth, predictions_csv, upload, wait_for_status

# Canvas rows: Student ("Last, First"), ID, SIS User ID, SIS Login ID, Section.
PEOPLE = {
    "zephyrine@uni.edu": ("Quillfeather, Zephyrine", "70001", "SIS-ZQ-4471", "Lab Aurora"),
    "bartholomew@uni.edu": ("Okonkwo-Vance, Bartholomew", "70002", "SIS-BO-9902", "Lab Boreal"),
    "ignatius@uni.edu": ("Fairweather-Lund, Ignatius", "70003", "SIS-IF-3318", "Lab Aurora"),
}
VIEWER = "zephyrine@uni.edu"


def roster_csv() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section"])
    for login, (name, lms, sis, section) in PEOPLE.items():
        writer.writerow([name, lms, sis, login, section])
    return b"\xef\xbb\xbf" + out.getvalue().encode()


def secrets_of(login: str) -> set[str]:
    """Everything that identifies `login` besides their display name."""
    name, lms, sis, _section = PEOPLE[login]
    last, first = (part.strip() for part in name.split(","))
    return {login, login.split("@")[0], name, f"{first} {last}", first, last, *last.split("-"), sis}


@pytest.fixture
def imported(course):
    """The three imported students joined and submitted; returns their tokens and submission ids."""
    from grader_api.services import invites

    client = course.client
    r = client.post("/api/v1/courses/default/roster", content=roster_csv(),
                    headers={**auth(course.instructor), "Content-Type": "text/csv"})
    assert r.status_code == 200 and r.json()["added"] == 3, r.text
    links = list(csv.reader(io.StringIO(client.post("/api/v1/courses/default/invites",
                                                    headers=auth(course.instructor)).text)))[1:]
    tokens, subs = {}, {}
    with course.app.state.db.transaction() as s:
        for _student, _email, link in links:
            user, token = invites.redeem(s, link.rsplit("/", 1)[1])
            tokens[user.name] = token
    for i, login in enumerate(PEOPLE):
        subs[login] = []
        for accuracy in (0.5 + 0.1 * i, 0.6 + 0.1 * i):
            r = upload(client, tokens[login], "pets", predictions_csv(course.labels, accuracy, seed=i),
                       note=f"try {accuracy:.1f}")
            assert r.status_code == 202, r.text
            subs[login].append(wait_for_status(client, tokens[login], r.json()["id"])["id"])
    return tokens, subs


def student_views(client, token: str, own_id: int, other_id: int) -> dict[str, tuple[int, str]]:
    """Every student-visible JSON response and page, by what was fetched: (status, body)."""
    headers = auth(token)
    seen = {}
    for path in ("/me", "/tasks", "/tasks/pets", "/tasks/pets/leaderboard?board=public",
                 "/tasks/pets/leaderboard?board=private", "/me/submissions?task=pets",
                 f"/submissions/{own_id}", f"/submissions/{other_id}", "/me/submissions/diff?a="
                 f"{own_id}&b={own_id}"):
        r = client.get("/api/v1" + path, headers=headers)
        seen["GET /api/v1" + path] = (r.status_code, r.text)
    client.cookies.clear()
    form = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    assert client.post("/login", data={"token": token, "csrf_token": csrf}, follow_redirects=False).status_code == 303
    for path in ("/", "/tasks/pets", "/tasks/pets?board=private", "/tasks/pets?sort=name", "/tasks/pets/history",
                 f"/submissions/{own_id}", f"/submissions/{other_id}", "/account", "/instructor",
                 "/instructor/courses/default/roster"):
        r = client.get(path)
        seen["page " + path] = (r.status_code, r.text)
    client.cookies.clear()
    return seen


def test_a_student_never_sees_another_students_login_real_name_email_or_ids(course, imported):
    tokens, subs = imported
    other = next(login for login in PEOPLE if login != VIEWER)

    seen = student_views(course.client, tokens[VIEWER], subs[VIEWER][-1], subs[other][-1])

    # Closed: the private board is shown to students too.
    r = course.client.patch("/api/v1/tasks/pets", headers=auth(course.instructor),
                            json={"deadline": "2020-01-01T00:00:00Z", "late_days": 0})
    assert r.status_code == 200, r.text
    closed = student_views(course.client, tokens[VIEWER], subs[VIEWER][-1], subs[other][-1])
    seen.update({f"{where} (closed)": answer for where, answer in closed.items()})

    own, theirs = subs[VIEWER][-1], subs[other][-1]
    expected = {
        **{f"GET /api/v1{p}": 200 for p in ("/me", "/tasks", "/tasks/pets", "/tasks/pets/leaderboard?board=public",
                                             "/me/submissions?task=pets", f"/submissions/{own}",
                                             f"/me/submissions/diff?a={own}&b={own}")},
        "GET /api/v1/tasks/pets/leaderboard?board=private": 403, f"GET /api/v1/submissions/{theirs}": 404,
        **{f"page {p}": 200 for p in ("/", "/tasks/pets", "/tasks/pets?sort=name", "/tasks/pets/history",
                                      f"/submissions/{own}", "/account")},
        "page /tasks/pets?board=private": 403, f"page /submissions/{theirs}": 404,
        "page /instructor": 403, "page /instructor/courses/default/roster": 403,
    }
    expected |= {f"{where} (closed)": 200 if "board=private" in where else status for where, status in expected.items()}
    assert {where: status for where, (status, _text) in seen.items()} == expected
    others = {login: secrets_of(login) for login in PEOPLE if login != VIEWER}
    leaks = [(where, login, secret) for where, (_s, text) in seen.items() for login, secrets in others.items()
             for secret in secrets if secret.lower() in text.lower()]
    assert leaks == []
    # Not vacuous: the other students are on the board the viewer saw, under their display names.
    me = course.client.get("/api/v1/tasks/pets/leaderboard?board=public", headers=auth(tokens[VIEWER])).json()
    assert len(me["rows"]) == 3 and {r["user"] for r in me["rows"]} == {r["display_name"] for r in me["rows"]}
    assert all(r["display_name"] in seen["page /tasks/pets"][1] for r in me["rows"])


def test_staff_see_real_names_next_to_display_names(course, imported):
    board = course.client.get("/api/v1/tasks/pets/leaderboard?board=public", headers=auth(course.instructor)).json()
    assert {r["user"] for r in board["rows"]} == set(PEOPLE)
    assert {r["real_name"] for r in board["rows"]} == {name for name, *_ in PEOPLE.values()}
    roster = course.client.get("/api/v1/courses/default/roster", headers=auth(course.instructor)).json()
    assert {m["sis_user_id"] for m in roster["members"] if m["login"] in PEOPLE} == {p[2] for p in PEOPLE.values()}
