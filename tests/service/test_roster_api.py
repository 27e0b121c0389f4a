"""The roster over HTTP: import (text/csv and multipart), listing and search, member changes,
invites.csv; who may call what; bad files answered 4xx with their line, changing nothing."""

from __future__ import annotations

import csv
import io
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from grader_api.services import roster_import
from tests.service.helpers import auth, wait_for_each_other_after

BOM = b"\xef\xbb\xbf"
CANVAS_HEADER = "Student,ID,SIS User ID,SIS Login ID,Section,Current Score"


def canvas(ids, section: str = "Section 1") -> bytes:
    lines = [CANVAS_HEADER, "    Points Possible,,,,,(read only)"]
    lines += [f'"Last{i:03d}, First{i}",{50000 + i},S{i:06d},stu{i:03d}@uni.edu,{section},75.00' for i in ids]
    return BOM + ("\r\n".join(lines) + "\r\n").encode()


def seed(app) -> dict[str, str]:
    """Next to `default` (prof instructor, alice and bob students): `ml101`, taught by prof with
    tara as TA and no students yet; `cv201`, taught by vera, with carl. Returns the new tokens."""
    import sqlalchemy as sa

    from grader_api.models import Role, User
    from grader_api.services.courses import create_course, enroll
    from grader_api.services.users import create_user

    tokens = {}
    with app.state.db.transaction() as s:
        ml = create_course(s, "ml101", "Machine Learning")
        enroll(s, ml, s.scalar(sa.select(User).where(User.name == "prof")), Role.INSTRUCTOR)
        tokens["tara"] = create_user(s, "tara", "ta", course=ml)[1]
        cv = create_course(s, "cv201", "Vision")
        tokens["vera"] = create_user(s, "vera", "instructor", course=cv)[1]
        tokens["carl"] = create_user(s, "carl", "student", course=cv)[1]
    return tokens


def as_members(course):
    """`call(method, path, who, ...)`: the API as one of the seeded people."""
    tokens = {"prof": course.instructor, "alice": course.alice, "bob": course.bob, **seed(course.app)}

    def call(method: str, path: str, who: str, **kw):
        headers = {**auth(tokens[who]), **kw.pop("headers", {})}
        return course.client.request(method, f"/api/v1{path}", headers=headers, **kw)

    call.tokens, call.client, call.settings = tokens, course.client, course.settings
    return call


@pytest.fixture
def api(course):
    return as_members(course)


def post_csv(api, data: bytes, who: str = "prof", course: str = "ml101", ctype: str = "text/csv"):
    return api("POST", f"/courses/{course}/roster", who, content=data, headers={"Content-Type": ctype})


def members(api, who: str = "prof", course: str = "ml101", **params) -> dict[str, dict]:
    r = api("GET", f"/courses/{course}/roster", who, params=params)
    assert r.status_code == 200, r.text
    return {m["login"]: m for m in r.json()["members"]}


def counts(body: dict) -> tuple[int, int, int, int]:
    return body["added"], body["unchanged"], body["updated"], body["dropped"]


def test_import_a_canvas_export_then_the_same_file_again(api):
    data = canvas(range(30))

    r = post_csv(api, data)

    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["course"], body["format"], counts(body)) == ("ml101", "canvas", (30, 0, 0, 0))
    assert body["skipped"] == [{"line": 2, "reason": "Canvas's 'Points Possible' line"}]
    assert body["refused"] == [] and body["dropped_logins"] == [] and body["drops_withheld"] is None
    row = members(api)["stu007@uni.edu"]
    assert row == {"login": "stu007@uni.edu", "full_name": "Last007, First7", "email": "stu007@uni.edu",
                   "display_name": row["display_name"], "role": "student", "status": "active",
                   "section": "Section 1", "lms_id": "50007", "sis_user_id": "S000007",
                   "sis_login_id": "stu007@uni.edu", "joined": False}
    assert counts(post_csv(api, data).json()) == (0, 30, 0, 0)

    later = post_csv(api, canvas(range(28))).json()
    assert counts(later) == (0, 28, 0, 2) and later["dropped_logins"] == ["stu028@uni.edu", "stu029@uni.edu"]
    listed = members(api)
    assert listed["stu029@uni.edu"]["status"] == "dropped"
    assert (listed["prof"]["role"], listed["prof"]["status"]) == ("instructor", "active")
    assert (listed["tara"]["role"], listed["tara"]["status"]) == ("ta", "active")


def test_multipart_upload_and_hostile_rows(api):
    data = BOM + (b"name,email,role,section\r\n"
                  b"\"Smith, Ann\",ann@uni.edu,student,\"A, morning\"\r\n"
                  b"\"Smith, Ann\",ann@uni.edu,student,\"A, morning\"\r\n"
                  b"Bo,bo@uni.edu,superuser,\r\n"
                  b"<script>alert(1)</script>,cy@uni.edu,,\r\n"
                  b"Dee,dee@uni.edu,ta,\r\n")

    r = api("POST", "/courses/ml101/roster", "prof", files={"file": ("roster.csv", data, "text/csv")})

    assert r.status_code == 200, r.text
    body = r.json()
    assert counts(body) == (2, 0, 0, 0)
    assert [(x["line"], x["reason"][:30]) for x in body["refused"]] == [
        (3, "duplicate of line 2 (the same "), (4, "role 'superuser' is not one of"),
        (5, "name '<script>alert(1)</script"),
    ]
    listed = members(api)
    assert (listed["ann@uni.edu"]["full_name"], listed["ann@uni.edu"]["section"]) == ("Smith, Ann", "A, morning")
    assert listed["dee@uni.edu"]["role"] == "ta"


def _nothing_changed(api, before: dict) -> None:
    assert members(api) == before


@pytest.mark.parametrize(("data", "status", "code", "line", "words"), [
    (b"", 422, "invalid_roster", None, "the file is empty"),
    (BOM + b"\r\n\r\n", 422, "invalid_roster", None, "the file is empty"),
    (b"Student,Section\r\nAnn,A\r\n", 422, "invalid_roster", 1, "Canvas export without the column(s) ID"),
    (b"ann@uni.edu,Ann\r\n", 422, "invalid_roster", 1, "the first line looks like a person"),
    (b"name,email\r\n\"Ann,ann@uni.edu\r\nBo,bo@uni.edu\r\n", 422, "invalid_roster", 2, "never closed"),
    (b"PK\x03\x04rest-of-a-workbook", 422, "invalid_roster", None, "not CSV"),
    (b"name,email\r\n<b>x</b>,x@uni.edu\r\n", 422, "no_importable_rows", 2, "nobody was dropped"),
])
def test_bad_files_are_refused_with_their_line_and_change_nothing(api, data, status, code, line, words):
    post_csv(api, canvas(range(3)))
    before = members(api)

    r = post_csv(api, data)

    assert r.status_code == status, r.text
    assert (r.json()["code"], r.json()["line"]) == (code, line) and words in r.json()["detail"]
    _nothing_changed(api, before)


def test_a_10_mb_roster_is_refused_before_it_is_read(api):
    big = b"name,email\r\n" + b"Ann,ann@uni.edu\r\n" * (10 * 1024 * 1024 // 17)

    r = post_csv(api, big)
    assert r.status_code == 413 and r.json()["code"] == "too_large" and "2 MB" in r.json()["detail"]

    def chunks():   # no Content-Length: refused while streaming
        for start in range(0, len(big), 64 * 1024):
            yield big[start:start + 64 * 1024]

    r = api("POST", "/courses/ml101/roster", "prof", content=chunks(), headers={"Content-Type": "text/csv"})
    assert r.status_code == 413 and "2 MB" in r.json()["detail"]
    r = api("POST", "/courses/ml101/roster", "prof", files={"file": ("big.csv", big, "text/csv")})
    assert r.status_code == 413 and "roster file too large" in r.json()["detail"]
    assert set(members(api)) == {"prof", "tara"}


def test_a_roster_of_another_type_is_refused_415(api):
    r = post_csv(api, b'{"name": "x"}', ctype="application/json")
    assert r.status_code == 415 and "text/csv" in r.json()["detail"]


@pytest.mark.parametrize(("who", "slug", "status"), [
    ("tara", "ml101", 403),    # a TA may read the roster, not import one
    ("alice", "ml101", 404),   # a student of another course does not see that ml101 exists
    ("carl", "ml101", 404),
    ("vera", "ml101", 404),    # nor does an instructor of another course
    ("carl", "cv201", 403),    # a student of the course
    ("prof", "no-such", 404),
])
def test_who_may_import(api, who, slug, status):
    r = post_csv(api, canvas(range(2)), who=who, course=slug)
    assert r.status_code == status, r.text
    if status == 404:
        assert r.json()["detail"] == f"course '{slug}' not found"


def test_who_may_read_the_roster_and_search_it(api):
    post_csv(api, canvas(range(12)) + b'"Percent, Person",60099,,pct@uni.edu,Sec_%,\r\n')

    assert set(members(api, "tara")) == set(members(api))
    for who, status in (("alice", 404), ("carl", 404), ("vera", 404)):
        assert api("GET", "/courses/ml101/roster", who).status_code == status
    assert api("GET", "/courses/cv201/roster", "carl").status_code == 403
    assert set(members(api, q="FIRST11")) == {"stu011@uni.edu"}                  # real name, any case
    assert set(members(api, q="stu00")) == {f"stu00{i}@uni.edu" for i in range(10)}
    assert set(members(api, q="_%")) == {"pct@uni.edu"}                          # LIKE characters are text
    shown = members(api)["stu003@uni.edu"]["display_name"]
    assert set(members(api, q=shown.upper())) == {"stu003@uni.edu"}
    assert set(members(api, role="ta")) == {"tara"}
    assert api("GET", "/courses/ml101/roster", "prof", params={"role": "admin"}).status_code == 422
    assert api("GET", "/courses/ml101/roster", "prof", params={"q": "x" * 101}).status_code == 422


def test_instructors_change_roles_sections_and_status(api):
    post_csv(api, canvas(range(2)))

    r = api("PATCH", "/courses/ml101/members/stu000@uni.edu", "prof", json={"role": "ta", "section": "Lab 2"})
    assert r.status_code == 200, r.text
    assert (r.json()["role"], r.json()["section"], r.json()["status"]) == ("ta", "Lab 2", "active")
    r = api("PATCH", "/courses/ml101/members/STU001@uni.edu", "prof", json={"status": "dropped"})
    assert (r.status_code, r.json()["status"], r.json()["section"]) == (200, "dropped", "Section 1")
    r = api("PATCH", "/courses/ml101/members/stu001@uni.edu", "prof", json={"status": "active", "section": None})
    assert (r.json()["status"], r.json()["section"]) == ("active", None)

    refused = {
        ("tara", "stu001@uni.edu", '{"role": "instructor"}'): 403,
        ("alice", "stu001@uni.edu", '{"role": "ta"}'): 404,
        ("prof", "nobody@uni.edu", '{"role": "ta"}'): 404,
        ("prof", "alice", '{"role": "ta"}'): 404,                      # enrolled elsewhere, not here
        ("prof", "stu001@uni.edu", '{"role": "owner"}'): 422,
        ("prof", "stu001@uni.edu", '{"admin": true}'): 422,
        ("prof", "stu001@uni.edu", '{"section": "<b>A</b>"}'): 422,
        ("prof", "stu001@uni.edu", '{"section": "A\\u202eB"}'): 422,
        ("prof", "stu001@uni.edu", '{"section": "' + "x" * 300 + '"}'): 422,
    }
    for (who, login, body), status in refused.items():
        r = api("PATCH", f"/courses/ml101/members/{login}", who, content=body,
                headers={"Content-Type": "application/json"})
        assert r.status_code == status, (who, login, body, r.text)
    assert members(api)["stu001@uni.edu"]["role"] == "student"


def test_the_last_instructor_stays_one(api):
    for body in ({"role": "ta"}, {"status": "dropped"}, {"role": "student", "status": "dropped"}):
        r = api("PATCH", "/courses/ml101/members/prof", "prof", json=body)
        assert r.status_code == 409 and r.json()["code"] == "last_instructor", r.text
        assert "only instructor" in r.json()["detail"]
    assert api("PATCH", "/courses/ml101/members/tara", "prof", json={"role": "instructor"}).status_code == 200
    assert api("PATCH", "/courses/ml101/members/prof", "prof", json={"role": "ta"}).status_code == 200
    assert api("PATCH", "/courses/ml101/members/tara", "tara", json={"role": "ta"}).status_code == 409


def test_invites_csv_for_students_who_have_not_joined(api):
    post_csv(api, canvas(range(3)) + b'"=HYPERLINK(""http://evil""),x",60001,,evil@uni.edu,A,\r\n')

    r = api("POST", "/courses/ml101/invites", "prof")

    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv") and "no-store" in r.headers["cache-control"]
    assert 'filename="invites-ml101.csv"' in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["student", "email", "link"]
    assert [row[:2] for row in rows[1:]] == [
        ["'=HYPERLINK(\"http://evil\"),x", "evil@uni.edu"], ["Last000, First0", "stu000@uni.edu"],
        ["Last001, First1", "stu001@uni.edu"], ["Last002, First2", "stu002@uni.edu"]]
    assert all(row[2].startswith("http://testserver/join/") for row in rows[1:])   # the request's base URL
    for who, status in (("tara", 403), ("alice", 404), ("vera", 404), ("carl", 404)):
        assert api("POST", "/courses/ml101/invites", who).status_code == status


def test_invite_links_use_the_public_url_when_set(api):
    post_csv(api, canvas(range(1)))
    api.settings.public_url = "https://grader.example.edu/ml"
    try:
        text = api("POST", "/courses/ml101/invites", "prof").text
    finally:
        api.settings.public_url = None
    assert "https://grader.example.edu/ml/join/" in text


def test_the_whole_roster_flow_on_sqlite_and_postgresql(any_course):
    """Import, re-import, drop, search, edit, invite, join and rename, on both backends."""
    from grader_api.services import invites

    api = as_members(any_course)
    assert counts(post_csv(api, canvas(range(40))).json()) == (40, 0, 0, 0)
    assert counts(post_csv(api, canvas(range(40))).json()) == (0, 40, 0, 0)
    assert post_csv(api, canvas(range(38))).json()["dropped_logins"] == ["stu038@uni.edu", "stu039@uni.edu"]
    listed = list(members(api))
    assert listed[:2] == ["prof", "tara"] and len(listed) == 42               # staff first
    assert set(members(api, q="first2", status="active")) == {f"stu{i:03d}@uni.edu" for i in (2, *range(20, 30))}
    r = api("PATCH", "/courses/ml101/members/stu001@uni.edu", "prof", json={"role": "ta", "section": "Lab"})
    assert (r.status_code, r.json()["role"]) == (200, "ta")
    assert api("PATCH", "/courses/ml101/members/prof", "prof", json={"role": "ta"}).status_code == 409

    rows = list(csv.reader(io.StringIO(api("POST", "/courses/ml101/invites", "prof").text)))[1:]
    assert len(rows) == 37                                                   # active students, not the new TA
    with any_course.app.state.db.transaction() as s:
        user, token = invites.redeem(s, rows[0][2].rsplit("/", 1)[1])
    assert api.client.get("/api/v1/me", headers=auth(token)).json()["name"] == user.name
    assert len(list(csv.reader(io.StringIO(api("POST", "/courses/ml101/invites", "prof").text)))) == 37  # header + 36
    api.tokens["joined"] = token
    assert api("PUT", "/courses/ml101/me/display-name", "joined", json={"display_name": "Quick Fox"}).status_code == 200
    taken = api("PUT", "/courses/ml101/me/display-name", "tara", json={"display_name": "QUICK FOX"})
    assert taken.status_code == 409


# --- found by a red-team review: cross-course sign-in, stale links, careless files, races ---------

def _link_for(invites_csv: str, email: str) -> str | None:
    for row in csv.DictReader(io.StringIO(invites_csv)):
        if row["email"] == email:
            return row["link"]
    return None


def _redeem(client, link: str) -> str:
    path = "/join/" + link.rsplit("/join/", 1)[1]
    page = client.get(path)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    done = client.post(path, data={"csrf_token": csrf})
    assert done.status_code == 200, done.text
    return re.search(r'id="token"[^>]*value="([^"]+)"', done.text).group(1)


def test_an_instructor_of_another_course_cannot_mint_a_sign_in_link_for_my_student(course):
    """Found by review (critical): prof imports stu001@uni.edu into ml101 (no token yet: the student has
    not opened their invite). vera, who teaches only cv201, imports a one-line roster naming
    that login into cv201 and then asks cv201's invites.csv: it holds a sign-in link for
    stu001, which vera redeems and so holds a token acting as stu001 in ml101 (reads their
    submissions, uploads as them; the student's own later invite is never issued, because the
    account now 'has joined'). `POST /users/{name}/tokens` refuses exactly this (managed_user:
    the caller must instruct every course of the user); issue_invites (services/invites.py) has no
    such check. Right: no link (and no token) for a user enrolled in a course the caller does
    not instruct; vera's token must never see ml101."""
    api = as_members(course)
    assert post_csv(api, canvas(range(2))).status_code == 200          # prof -> ml101
    victim = "stu001@uni.edu"

    r = post_csv(api, f"name,email\nAnyone,{victim}\n".encode(), who="vera", course="cv201")
    assert r.status_code == 200, r.text
    r = api("POST", "/courses/cv201/invites", "vera")
    assert r.status_code == 200, r.text
    link = _link_for(r.text, victim)
    if link is not None:       # the defect: show what the link gives
        token = _redeem(api.client, link)
        seen = api.client.get("/api/v1/me", headers=auth(token)).json()
        assert "ml101" not in [c["course"] for c in seen["courses"]], (
            "vera signed in as ml101's student through cv201's invites.csv")
    assert link is None, "cv201's invites.csv holds a sign-in link for a student of ml101"


def test_invites_csv_counts_and_explains_the_students_it_has_no_link_for(api):
    assert post_csv(api, canvas(range(2))).status_code == 200
    assert post_csv(api, b"name,email\nAnyone,stu001@uni.edu\n", who="vera", course="cv201").status_code == 200

    mine = api("POST", "/courses/ml101/invites", "prof")
    theirs = api("POST", "/courses/cv201/invites", "vera")

    assert [row["email"] for row in csv.DictReader(io.StringIO(mine.text))] == ["stu000@uni.edu"]
    assert mine.headers["x-invites-withheld"] == "1"
    assert mine.headers["x-invites-note"].startswith("1 student(s) are enrolled in other courses too")
    assert "grade admin roster import" in mine.headers["x-invites-note"]
    assert list(csv.DictReader(io.StringIO(theirs.text))) == [] and theirs.headers["x-invites-withheld"] == "1"
    alone = api("POST", "/courses/default/invites", "prof")
    assert alone.headers["x-invites-withheld"] == "0" and "x-invites-note" not in alone.headers


def test_rotating_my_token_voids_the_sign_in_links_still_in_my_mailbox(course):
    """Found by review (medium): A student who rotates their token (e.g. because they fear it leaked) still
    has live sign-in links: invites.redeem checks only used/expired/dropped, and rotate_token
    (tokens.py) touches no invite. Here prof's invite mail was never opened; the student got a
    token another way (prof's POST /users/{name}/tokens) and rotated it; anyone holding the old
    mail (a forwarded message, a shared inbox, a mail-scanner log) still signs in as the student
    and gets a fresh live token beside theirs, unnoticed. Right: rotating (or any token being
    issued) voids the user's unused invites, or redeem refuses a user who already holds a live
    token, with the same 'not valid' answer."""
    api = as_members(course)
    assert post_csv(api, b"name,email\nAnn Lee,ann@uni.edu\n").status_code == 200
    links = list(csv.DictReader(io.StringIO(api("POST", "/courses/ml101/invites", "prof").text)))
    link = links[0]["link"]
    r = api("POST", "/users/ann@uni.edu/tokens", "prof")
    assert r.status_code == 201, r.text
    mine = r.json()["token"]
    rotated = course.client.post("/api/v1/me/token/rotate", headers=auth(mine)).json()["token"]

    try:
        other = _redeem(course.client, link)
    except AssertionError:
        return   # refused: the right behaviour
    me = course.client.get("/api/v1/me", headers=auth(other))
    assert me.status_code != 200, (
        f"the old link still signs in as {me.json()['name']} after they rotated (their token {rotated[:6]}… "
        "and this one are both live)")


def test_a_file_of_staff_only_does_not_drop_every_student(course):
    """Found by review (medium): roster_import promises 'an import never takes nobody for everybody
    dropped' (a file with no importable row is refused), but a file with importable rows and no
    student in it is taken as 'every student left': an instructor importing their TA list
    (name,email,role with role ta) drops the whole class (here 3 of 3; in the brief's course,
    400) from the boards and from invites.csv. Right: a file with no student row drops no one
    (or is refused like an empty file), saying so in drops_withheld."""
    api = as_members(course)
    assert post_csv(api, canvas(range(3))).status_code == 200

    r = post_csv(api, b"name,email,role\nTia Two,tia@uni.edu,ta\n")

    assert r.status_code in (200, 422), r.text
    assert r.status_code == 422 or r.json()["dropped"] == 0, f"dropped {r.json()['dropped_logins']}"
    active = [m for m in members(api).values() if m["role"] == "student" and m["status"] == "active"]
    assert len(active) == 3


def test_another_courses_instructor_does_not_write_my_students_real_name(course):
    """Found by review (low-medium): A person's name 'belongs to every course' and an import 'fills it in
    where it is empty' (roster_import._update_person): vera, who teaches only cv201, lists
    login 'alice' (a student of the default course created without a name) in a Canvas file with
    the name 'Evil, Mallory'; prof's roster, staff board and invites.csv for the default course
    now call alice 'Evil, Mallory'. Right: a file writes a person's name and email only when the
    importer instructs every course the person is in (the rule of managed_user), as for tokens."""
    api = as_members(course)
    data = b'Student,ID,SIS User ID,SIS Login ID,Section\n"Evil, Mallory",1,S1,alice,A\n'
    assert post_csv(api, data, who="vera", course="cv201").status_code == 200

    assert members(api, course="default")["alice"]["full_name"] is None


def test_another_courses_import_does_not_lock_me_out_of_revoking_my_students_token(course):
    """Found by review (medium): Listing any login in cv201's roster enrols that user there; from then on
    managed_user (services/users.py) answers 404 to the instructor of the user's own course for
    POST /users/{name}/revoke and /tokens, because they do not instruct cv201. So vera can stop
    prof from revoking a leaked token of prof's student (or from giving them one). Right: an
    instructor may revoke the tokens of a student of their course whatever other courses they are
    in (revoking harms no one); minting stays as strict as it is, and the import does not enrol
    users of other courses without the site administrator (or the user) agreeing."""
    api = as_members(course)
    assert post_csv(api, canvas(range(2))).status_code == 200
    assert post_csv(api, b"name,email\nX,stu001@uni.edu\n", who="vera", course="cv201").status_code == 200

    r = api("POST", "/users/stu001@uni.edu/revoke", "prof")

    assert r.status_code == 200, r.text


def test_revoking_is_open_to_the_instructor_of_a_students_course_minting_is_not(api):
    assert post_csv(api, canvas(range(2))).status_code == 200
    assert post_csv(api, b"name,email\nX,stu001@uni.edu\n", who="vera", course="cv201").status_code == 200

    assert api("POST", "/users/stu001@uni.edu/tokens", "prof").status_code == 404    # vera's student too
    assert api("POST", "/users/stu001@uni.edu/tokens", "vera").status_code == 404
    for who in ("tara", "alice", "carl"):
        assert api("POST", "/users/stu001@uni.edu/revoke", who).status_code == 404
    assert api("POST", "/users/stu001@uni.edu/revoke", "vera").status_code == 200
    assert api("POST", "/users/tara/revoke", "vera").status_code == 404             # staff elsewhere
    assert api("POST", "/users/stu000@uni.edu/tokens", "prof").status_code == 201   # only prof's


def test_the_same_class_exported_without_sis_data_is_not_a_new_class(course):
    """Found by review (medium): People are matched by login only (roster_import._users_by_login), and a
    Canvas row's login is its SIS Login ID, else SIS User ID, else Canvas ID. Canvas leaves the
    SIS cells empty when the exporting account may not see SIS data (a TA's export, a changed
    permission): importing that export of the same class makes every student a new account
    ('50000', '50001', ...) and drops every real one, although each row carries the Canvas ID
    stored at the first import. Right: match a Canvas row by its stored Canvas ID (lms_id) in
    the course first; this file changes nothing."""
    api = as_members(course)
    assert post_csv(api, canvas(range(3))).status_code == 200
    lines = ["Student,ID,SIS User ID,SIS Login ID,Section"]
    lines += [f'"Last{i:03d}, First{i}",{50000 + i},,,Section 1' for i in range(3)]

    r = post_csv(api, ("\r\n".join(lines) + "\r\n").encode())

    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["added"], body["dropped"]) == (0, 0), body


@pytest.mark.postgres
def test_two_courses_importing_the_same_new_student_at_once(tmp_path, monkeypatch):
    """Found by review (medium): At term start two instructors import rosters that share a student nobody
    has imported yet. Each import locks only its own course row, reads 'no such user' and inserts
    users.name = 'ann@uni.edu'; the second insert breaks the unique key and, with no handler
    for IntegrityError, the instructor gets a 500 'internal server error' (nothing stored, no
    line, no hint to retry). Right: both imports succeed (the second finds the user the first
    made: insert-or-select under a lock on the login), or the second gets a 409 saying to retry."""
    from tests.service.pg_course import course_on_postgres

    with course_on_postgres(tmp_path) as course:
        api = as_members(course)
        wait_for_each_other_after(monkeypatch, roster_import, "_users_by_login", 2)
        jobs = [("prof", "ml101"), ("vera", "cv201")]

        def run(job):
            try:
                return post_csv(api, b"name,email\nAnn Lee,ann@uni.edu\n", who=job[0], course=job[1]).status_code
            except Exception as exc:   # the test client re-raises what the server answers 500 to
                return f"500 ({type(exc).__name__})"

        with ThreadPoolExecutor(2) as pool:
            codes = list(pool.map(run, jobs))
        assert codes == [200, 200] or sorted(map(str, codes)) == ["200", "409"], codes


# --- grade admin roster import ------------------------------------------------------------------


@pytest.fixture
def admin_cli(tmp_path, monkeypatch):
    """`grade admin ...` in-process on an embedded server's var dir holding course ml101."""
    from typer.testing import CliRunner

    from grader_api.cli.main import app
    from grader_api.config import get_settings
    from grader_api.db import dispose_database, get_database
    from grader_api.services.courses import create_course
    from tests.service.conftest import embedded_settings

    settings = embedded_settings(tmp_path)
    for name in ("DATABASE_URL", "REDIS_URL", "HELDOUT_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HELDOUT_VAR_DIR", str(settings.var_dir))
    get_settings.cache_clear()
    with get_database(settings.effective_database_url).transaction() as s:
        create_course(s, "ml101", "Machine Learning")
    runner = CliRunner()
    try:
        yield lambda *args: runner.invoke(app, ["admin", *args], catch_exceptions=False)
    finally:
        get_settings.cache_clear()
        dispose_database(settings.effective_database_url)


def test_admin_roster_import_prints_counts_and_refused_lines_and_writes_invites(admin_cli, tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_bytes(canvas(range(3)) + b'"Evil, \x1b[2J",60009,,evil@uni.edu,A,\r\n')
    invites = tmp_path / "invites.csv"

    out = admin_cli("roster", "import", "ml101", str(roster), "--invites", str(invites),
                    "--base-url", "https://grader.example.edu")

    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == "ml101: 3 added, 0 updated, 0 unchanged, 0 dropped, 1 refused (canvas roster)"
    assert lines[1].startswith("line 6: refused: Student 'Evil, \\x1b[2J' holds the control")
    assert "\x1b" not in out.output and "line 2: skipped: Canvas's 'Points Possible' line" in lines
    assert "wrote 3 sign-in link(s)" in lines[-1]
    assert invites.stat().st_mode & 0o077 == 0   # its links sign people in: owner-only
    rows = list(csv.reader(io.StringIO(invites.read_text())))
    assert rows[0] == ["student", "email", "link"] and len(rows) == 4
    assert all(r[2].startswith("https://grader.example.edu/join/") for r in rows[1:])

    again = admin_cli("roster", "import", "ml101", str(roster))
    assert again.output.splitlines()[0] == ("ml101: 0 added, 0 updated, 3 unchanged, 0 dropped, 1 refused "
                                            "(canvas roster)")


@pytest.mark.parametrize(("content", "args", "words"), [
    (b"", (), "error: roster: the file is empty"),
    (b"name,email\n\"Ann,a@b.cd\n", (), "error: roster: line 2: a quote opened here is never closed"),
    (b"x" * (3 * 1024 * 1024), (), "error: roster: the file is 3 MB; the limit is 2 MB"),
    (b"name,email\nAnn,ann@uni.edu\n", ("--invites", "inv.csv"), "error: --invites needs the address students open"),
])
def test_admin_roster_import_refuses_bad_files_in_one_line(admin_cli, tmp_path, content, args, words):
    roster = tmp_path / "roster.csv"
    roster.write_bytes(content)

    out = admin_cli("roster", "import", "ml101", str(roster), *args)

    assert out.exit_code == 1 and out.stderr.strip().startswith(words), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.output
    assert admin_cli("roster", "import", "no-such", str(roster)).exit_code == 1
