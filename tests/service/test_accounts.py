"""A member's own account over HTTP: the display name (checked, unique ignoring case, a taken
name refused without saying whose it is) and token rotation."""

from __future__ import annotations

import json

import pytest

from tests.service import test_roster_api
from tests.service.helpers import auth

api = test_roster_api.api   # the same fixture: courses default, ml101 and cv201 with their members


def put_name(api, who: str, name: str, course: str = "default"):
    return api("PUT", f"/courses/{course}/me/display-name", who, json={"display_name": name})


def shown_names(api, who: str) -> dict[str, str]:
    return {c["course"]: c["display_name"] for c in api("GET", "/me", who).json()["courses"]}


def test_a_member_chooses_a_display_name(api):
    r = put_name(api, "alice", "  Gradient   Descender ")

    assert r.status_code == 200, r.text
    assert r.json() == {"course": "default", "display_name": "Gradient Descender"}
    assert shown_names(api, "alice")["default"] == "Gradient Descender"
    assert put_name(api, "alice", "gradient descender").status_code == 200   # her own name, another case
    assert put_name(api, "prof", "The Prof").status_code == 200             # staff have one too
    assert put_name(api, "tara", "Tara the TA", course="ml101").status_code == 200


def test_a_taken_name_is_refused_without_naming_its_holder(api):
    assert put_name(api, "alice", "Otter").status_code == 200

    for attempt in ("otter", "OTTER", "Ｏｔｔｅｒ", " Otter "):
        r = put_name(api, "bob", attempt)
        assert r.status_code == 409 and r.json()["code"] == "display_name_taken", r.text
        assert "taken in this course" in r.json()["detail"] and "alice" not in r.json()["detail"]
    assert put_name(api, "carl", "Otter", course="cv201").status_code == 200    # another course: free
    assert shown_names(api, "bob")["default"] != "Otter"


@pytest.mark.parametrize(("name", "words"), [
    ("<script>alert(1)</script>", "not allowed"),
    ("Bobby\"; DROP TABLE", "not allowed"),
    ("evil\u202egnp.exe", "U+202E"),
    ("tab\there", "U+0009"),
    ("zero\u200bwidth", "U+200B"),
    ("x" * 300, "300 characters long; it must be 3 to 40"),
    ("ab", "2 characters long"),
    ("12345", "at least one letter"),
    ("me@uni.edu", "looks like an email address"),
])
def test_bad_display_names_are_refused_with_the_rule(api, name, words):
    before = shown_names(api, "alice")["default"]

    r = put_name(api, "alice", name)

    assert r.status_code == 422 and r.json()["code"] == "invalid_display_name", r.text
    assert words in r.json()["detail"]
    assert shown_names(api, "alice")["default"] == before


def test_display_names_only_in_ones_own_active_courses(api):
    assert put_name(api, "alice", "Somebody", course="cv201").status_code == 404
    assert put_name(api, "alice", "Somebody", course="no-such").status_code == 404
    api("PATCH", "/courses/default/members/bob", "prof", json={"status": "dropped"})
    assert put_name(api, "bob", "Still Here").status_code == 404
    assert api("PUT", "/courses/default/me/display-name", "alice", json={}).status_code == 422
    r = api("PUT", "/courses/default/me/display-name", "alice", json={"display_name": "x" * 5000})
    assert r.status_code == 422


def test_rotating_the_token_revokes_every_earlier_one(api):
    from grader_api.services.users import get_user
    from grader_api.tokens import issue_token

    with api.client.app.state.db.transaction() as s:
        second = issue_token(s, get_user(s, "alice"))
    old = api.tokens["alice"]

    r = api("POST", "/me/token/rotate", "alice")

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "alice" and body["revoked"] == 2 and body["token"] not in (old, second)
    for stale in (old, second):
        assert api.client.get("/api/v1/me", headers=auth(stale)).status_code == 401
    assert api.client.get("/api/v1/me", headers=auth(body["token"])).json()["name"] == "alice"
    assert api.client.post("/api/v1/me/token/rotate").status_code == 401


# --- the `grade` commands against a real server -------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """`grade serve` on the embedded default: prof, alice and bob in `default`; alice also in ml101."""
    import sqlalchemy as sa

    from grader_api.config import Settings
    from grader_api.db import dispose_database, get_database
    from grader_api.models import Role, User
    from grader_api.services.courses import create_course, enroll
    from tests.web.live_server import REPO, running_server, seed_course

    var = tmp_path_factory.mktemp("accounts-cli") / "var"
    tokens, _labels = seed_course(var)
    url = Settings(var_dir=var, database_url=None, datasets_dir=REPO / "datasets").effective_database_url
    with get_database(url).transaction() as s:
        enroll(s, create_course(s, "ml101", "Machine Learning"),
               s.scalar(sa.select(User).where(User.name == "alice")), Role.STUDENT)
    dispose_database(url)
    with running_server(var) as server:
        server.tokens = tokens
        yield server


@pytest.fixture
def grade(live, tmp_path):
    """Run `grade ...` in-process against the live server with its own config dir."""
    from typer.testing import CliRunner

    from grader_api.cli.main import app

    def run(*args: str, token: str | None = None, env: dict | None = None):
        e = {"GRADE_CONFIG_DIR": str(tmp_path / "cfg"), "GRADE_SERVER": live.url, "GRADE_TOKEN": token,
             "GRADE_COURSE": None, **(env or {})}
        return CliRunner().invoke(app, list(args), env=e, catch_exceptions=False)

    return run


def one_line_error(result) -> str:
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_grade_courses_lists_roles_and_display_names(grade, live):
    out = grade("courses", "--json", token=live.tokens["alice"])
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)
    assert body["name"] == "alice" and [c["course"] for c in body["courses"]] == ["default", "ml101"]
    table = grade("courses", token=live.tokens["alice"])
    assert table.exit_code == 0 and "ml101" in table.stdout and "Machine Learning" in table.stdout


def test_grade_name_set(grade, live):
    alice = live.tokens["alice"]

    several = grade("name", "set", "Night Owl", token=alice)
    assert several.exit_code == 2
    assert "several courses (default, ml101): name one with --course" in one_line_error(several)

    ok = grade("name", "set", "Night Owl", "--course", "ml101", token=alice)
    assert ok.exit_code == 0, ok.output
    assert "your display name in ml101 is now Night Owl" in ok.stdout
    assert grade("name", "set", "Day Owl", token=alice, env={"GRADE_COURSE": "default"}).exit_code == 0
    shown = {c["course"]: c["display_name"]
             for c in json.loads(grade("courses", "--json", token=alice).stdout)["courses"]}
    assert shown == {"default": "Day Owl", "ml101": "Night Owl"}

    bad = grade("name", "set", "<b>\x1b[31mred</b>", "--course", "ml101", token=alice)
    assert bad.exit_code == 2 and "\x1b" not in bad.stderr and "U+001B" in one_line_error(bad)
    taken = grade("name", "set", "day owl", "--course", "default", token=live.tokens["bob"])
    assert taken.exit_code == 2 and "is taken in this course" in one_line_error(taken)
    assert grade("name", "set", "Elsewhere", "--course", "cv999", token=alice).exit_code == 2


def test_grade_token_rotate_saves_the_new_token_and_prints_it_only_when_asked(grade, live, tmp_path):
    import stat

    import httpx

    old = live.tokens["bob"]
    assert grade("login", "--server", live.url, "--token", old).exit_code == 0
    config = tmp_path / "cfg" / "config.json"

    out = grade("token", "rotate")

    assert out.exit_code == 0, out.output
    saved = json.loads(config.read_text())["token"]
    assert saved != old and saved not in out.output and "1 earlier token(s) revoked" in out.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert httpx.get(f"{live.url}/api/v1/me", headers={"Authorization": f"Bearer {old}"}).status_code == 401
    assert grade("courses").exit_code == 0   # the CLI goes on with the saved token

    shown = grade("token", "rotate", "--show")
    newest = json.loads(config.read_text())["token"]
    assert shown.exit_code == 0 and shown.stdout.splitlines()[-1] == newest
    assert grade("courses", token=saved).exit_code == 3   # revoked by the second rotation

    env = grade("token", "rotate", "--json", token=newest)
    assert env.exit_code == 0 and "token" not in json.loads(env.stdout)
    assert "GRADE_TOKEN is set and holds the old token" in env.stderr
    live.tokens["bob"] = json.loads(config.read_text())["token"]
