"""Teams over HTTP (and the `grade team` commands): a team of two shares its daily limit, its
final choice and one leaderboard row; joins past `team_size`, guessed codes, students of other
courses and leaving after a scored submission are refused; staff move members; two joins
racing for the last seat, and two members racing for the day's last upload, cannot both win."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from grader_api.services import tasks as task_service
from grader_api.services import teams as team_service
from tests.service.helpers import (
    DISPLAY_NAMES,
    auth,
    predictions_csv,
    task_yaml,
    upload,
    wait_for_each_other_after,
    wait_for_status,
)


def _team_task(course, daily_limit: int | None = 3) -> None:
    r = course.client.patch("/api/v1/tasks/pets", json={"yaml": task_yaml(extra="team_size: 2\n"),
                                                        "daily_limit": daily_limit},
                            headers=auth(course.instructor))
    assert r.status_code == 200 and r.json()["team_size"] == 2, r.text


def _new_student(course, name: str) -> str:
    r = course.client.post("/api/v1/users", json={"name": name, "role": "student"}, headers=auth(course.instructor))
    assert r.status_code == 201, r.text
    return r.json()["token"]


def _other_course_student(course, name: str = "eve") -> str:
    from grader_api.services.courses import create_course
    from grader_api.services.users import create_user

    with course.app.state.db.transaction() as s:
        return create_user(s, name, "student", course=create_course(s, "other-course", "Other"))[1]


def _create(course, token: str, name: str = "otters", **body):
    return course.client.post("/api/v1/tasks/pets/teams", json={"name": name, **body}, headers=auth(token))


def _join(course, token: str, code: str):
    return course.client.post("/api/v1/teams/join", json={"code": code}, headers=auth(token))


def _pair(course) -> dict:
    """alice and bob in team 'otters'; returns alice's view of it."""
    r = _create(course, course.alice)
    assert r.status_code == 201, r.text
    team = r.json()
    assert _join(course, course.bob, team["join_code"]).status_code == 200
    return team


def _scored(course, token: str, accuracy: float, seed: int) -> dict:
    r = upload(course.client, token, "pets", predictions_csv(course.labels, accuracy, seed=seed))
    assert r.status_code == 202, r.text
    sub = wait_for_status(course.client, token, r.json()["id"])
    assert sub["status"] == "scored", sub
    return sub


def test_a_team_of_two_shares_its_quota_and_holds_one_board_row(course):
    _team_task(course, daily_limit=3)
    team = _pair(course)
    subs = [_scored(course, course.alice, acc, seed) for seed, acc in enumerate((0.5, 0.7, 0.6), start=1)]

    r = upload(course.client, course.bob, "pets", predictions_csv(course.labels, 0.9, seed=9))
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "daily_limit" and "Retry-After" in r.headers
    assert "3 of 3 submissions for 'pets' today for team 'otters'" in r.json()["detail"]
    tasks = course.client.get("/api/v1/tasks", headers=auth(course.bob)).json()
    assert [t["submissions_left_today"] for t in tasks if t["name"] == "pets"] == [0]

    for token in (course.alice, course.bob, course.instructor):
        rows = course.client.get("/api/v1/tasks/pets/leaderboard", headers=auth(token)).json()["rows"]
        assert [(x["user"], x["display_name"], x["entries"]) for x in rows] == [("otters", "otters", 3)]
        assert rows[0]["score"] == subs[1]["public_score"]
    bob_row = course.client.get("/api/v1/tasks/pets/leaderboard", headers=auth(course.bob)).json()["rows"][0]
    assert bob_row["is_me"] and bob_row["submission_id"] == subs[1]["id"]

    # bob sees the team's submissions (alice by her display name only) and the team's history
    seen = course.client.get(f"/api/v1/submissions/{subs[0]['id']}", headers=auth(course.bob)).json()
    assert seen["user"] == DISPLAY_NAMES["alice"]
    history = course.client.get("/api/v1/me/submissions", params={"task": "pets"}, headers=auth(course.bob)).json()
    assert [h["id"] for h in history["submissions"]] == [s["id"] for s in subs]
    mine = course.client.get("/api/v1/tasks/pets/team", headers=auth(course.bob)).json()
    assert mine["team"]["name"] == "otters" and mine["team"]["join_code"] == team["join_code"]
    assert [(m["display_name"], m["login"], m["is_me"]) for m in mine["team"]["members"]] == [
        (DISPLAY_NAMES["alice"], None, False), (DISPLAY_NAMES["bob"], None, True)]
    assert "alice" not in json.dumps(mine) and mine["team"]["locked"] is True

    grades = course.client.get("/api/v1/tasks/pets/grades.csv", headers=auth(course.instructor)).text
    by_student = {line.split(",")[0]: line.split(",")[2] for line in grades.strip().splitlines()[1:]}
    assert by_student["alice"] == by_student["bob"] != ""


def test_joins_past_team_size_guessed_codes_and_other_courses_are_refused(course):
    _team_task(course)
    team = _pair(course)
    carol = _new_student(course, "carol")
    r = _join(course, carol, team["join_code"])
    assert r.status_code == 409 and r.json()["code"] == "team_full" and "2 of 2" in r.json()["detail"]

    eve = _other_course_student(course)
    theirs, bogus = _join(course, eve, team["join_code"]), _join(course, eve, "A" * 22)
    assert theirs.status_code == bogus.status_code == 404
    assert theirs.json() == bogus.json() == {"detail": "team with that join code not found", "code": "not_found",
                                             "line": None, "column": None}
    assert course.client.get("/api/v1/tasks/pets/team", headers=auth(eve)).status_code == 404
    assert _create(course, eve).status_code == 404


@pytest.mark.parametrize("guess", ["A" * 22, "x", "<script>", "a b", "%00", "é" * 22])
def test_a_wrong_code_is_404_and_ten_of_them_lock_the_account_out(course, guess):
    _team_task(course)
    team = _create(course, course.alice).json()
    for _ in range(10):
        r = _join(course, course.bob, guess)
        assert r.status_code == 404, r.text
    r = _join(course, course.bob, team["join_code"])   # even the right code, now
    assert r.status_code == 429 and r.json()["code"] == "rate_limited" and "your account" in r.json()["detail"]
    assert int(r.headers["Retry-After"]) > 0
    mine = course.client.get("/api/v1/tasks/pets/team", headers=auth(course.bob)).json()
    assert mine["team"] is None


def test_wrong_codes_are_limited_per_address_too(course, monkeypatch):
    from grader_api.routers import teams as team_router

    monkeypatch.setattr(team_router, "JOIN_FAILURES_PER_ADDRESS", "3/hour")
    _team_task(course)
    team = _create(course, course.alice).json()
    carol = _new_student(course, "carol")
    assert [_join(course, who, "B" * 22).status_code for who in (course.bob, carol, course.bob)] == [404] * 3
    r = _join(course, carol, team["join_code"])
    assert r.status_code == 429 and "your address" in r.json()["detail"]


def test_an_oversized_code_is_refused_before_any_lookup(course):
    _team_task(course)
    r = _join(course, course.bob, "A" * 10_000)
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"


def test_leave_before_a_scored_submission_but_not_after(course):
    _team_task(course)
    team = _pair(course)
    r = course.client.post("/api/v1/tasks/pets/team/leave", headers=auth(course.bob))
    assert r.status_code == 200 and r.json() == {"task": "pets", "team": "otters", "dissolved": False}
    assert _join(course, course.bob, team["join_code"]).status_code == 200
    _scored(course, course.bob, 0.6, 3)
    r = course.client.post("/api/v1/tasks/pets/team/leave", headers=auth(course.alice))
    assert r.status_code == 409 and r.json()["code"] == "team_locked"
    members = course.client.get("/api/v1/tasks/pets/team", headers=auth(course.alice)).json()["team"]["members"]
    assert len(members) == 2


def test_staff_list_move_rename_and_dissolve_teams(course):
    _team_task(course)
    otters = _pair(course)
    sub = _scored(course, course.bob, 0.8, 4)
    carol = _new_student(course, "carol")
    r = course.client.post("/api/v1/users", json={"name": "tina", "role": "ta"}, headers=auth(course.instructor))
    tina = r.json()["token"]

    r = _create(course, tina, "herons", members=["carol"])
    assert r.status_code == 201 and [m["login"] for m in r.json()["members"]] == ["carol"]
    herons = r.json()
    r = course.client.patch(f"/api/v1/teams/{herons['id']}", json={"add": ["bob"], "name": "Herons"},
                            headers=auth(course.instructor))
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Herons" and [m["login"] for m in r.json()["members"]] == ["carol", "bob"]
    assert r.json()["members"][1]["real_name"] == "bob"
    teams = course.client.get("/api/v1/tasks/pets/teams", headers=auth(tina)).json()
    assert [(t["name"], [m["login"] for m in t["members"]]) for t in teams] == [
        ("Herons", ["carol", "bob"]), ("otters", ["alice"])]
    rows = course.client.get("/api/v1/tasks/pets/leaderboard", headers=auth(carol)).json()["rows"]
    assert [(x["user"], x["submission_id"], x["is_me"]) for x in rows] == [("Herons", sub["id"], True)]

    for who, status in ((course.alice, 403), (_other_course_student(course), 404)):
        assert course.client.patch(f"/api/v1/teams/{otters['id']}", json={"name": "mine"},
                                   headers=auth(who)).status_code == status
        assert course.client.delete(f"/api/v1/teams/{otters['id']}", headers=auth(who)).status_code == status
    assert course.client.get("/api/v1/tasks/pets/teams", headers=auth(course.alice)).status_code == 403
    r = _create(course, course.bob, "badgers", members=["carol"])
    assert r.status_code == 403

    r = course.client.delete(f"/api/v1/teams/{herons['id']}", headers=auth(tina))
    assert r.status_code == 204 and not r.content
    assert course.client.patch(f"/api/v1/teams/{herons['id']}", json={"name": "x"},
                               headers=auth(tina)).status_code == 404
    assert course.client.get("/api/v1/tasks/pets/team", headers=auth(course.bob)).json()["team"] is None
    assert course.client.patch(f"/api/v1/teams/{2**40}", json={}, headers=auth(tina)).status_code == 422


@pytest.mark.parametrize(("name", "status"), [("<img src=x>", 422), ("a\u202ebc", 422), ("x" * 300, 422),
                                              ("eve@uni.edu", 422), ("OTTERS", 409), (DISPLAY_NAMES["bob"], 409)])
def test_hostile_team_names_are_refused_and_nothing_is_stored(course, name, status):
    _team_task(course)
    assert _create(course, course.alice).status_code == 201
    r = _create(course, course.bob, name)
    assert r.status_code == status, r.text
    assert r.json()["detail"].startswith("team name: ")
    assert course.client.get("/api/v1/tasks/pets/team", headers=auth(course.bob)).json()["team"] is None


def test_no_teams_in_a_task_done_alone(course):
    r = _create(course, course.alice)
    assert r.status_code == 409 and r.json()["code"] == "individual_task"
    assert course.client.get("/api/v1/tasks/pets/team", headers=auth(course.alice)).json() == {
        "task": "pets", "course": "default", "team_size": 1, "team": None}


def test_the_team_routes_are_documented(course):
    paths = course.client.get("/api/v1/openapi.json").json()["paths"]
    for path, method in (("/api/v1/tasks/{task}/teams", "post"), ("/api/v1/teams/join", "post"),
                         ("/api/v1/tasks/{task}/team", "get"), ("/api/v1/tasks/{task}/team/leave", "post"),
                         ("/api/v1/tasks/{task}/teams", "get"), ("/api/v1/teams/{team_id}", "patch"),
                         ("/api/v1/teams/{team_id}", "delete")):
        assert method in paths[path], (path, method)
        assert paths[path][method]["tags"] == ["teams"]


def test_two_joins_for_the_last_seat_one_wins(any_course, monkeypatch):
    course = any_course
    _team_task(course)
    code = _create(course, course.alice).json()["join_code"]
    carol = _new_student(course, "carol")
    wait_for_each_other_after(monkeypatch, team_service, "check_room", 2)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda token: _join(course, token, code), (course.bob, carol)))
    assert sorted(r.status_code for r in answers) == [200, 409]
    members = course.client.get("/api/v1/tasks/pets/team", headers=auth(course.alice)).json()["team"]["members"]
    assert len(members) == 2


def test_two_members_racing_for_the_days_last_upload_one_wins(any_course, monkeypatch):
    course = any_course
    _team_task(course, daily_limit=2)
    _pair(course)
    _scored(course, course.alice, 0.5, 1)
    wait_for_each_other_after(monkeypatch, task_service, "check_daily_limit", 2)
    files = {course.alice: predictions_csv(course.labels, 0.6, 11), course.bob: predictions_csv(course.labels, 0.6, 12)}
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda item: upload(course.client, item[0], "pets", item[1]), files.items()))
    assert sorted(r.status_code for r in answers) == [202, 429]


def test_grade_team_commands(course, monkeypatch):
    from typer.testing import CliRunner

    from grader_api.cli import student
    from grader_api.cli.main import app
    from grader_api.client import Client

    _team_task(course)
    who = {"token": course.alice}
    monkeypatch.setattr(student, "_client", lambda as_json: Client(
        "http://testserver", who["token"], transport=course.client._transport))
    runner = CliRunner()

    r = runner.invoke(app, ["team", "create", "--task", "pets", "--name", "otters", "--json"])
    assert r.exit_code == 0, r.output
    code = json.loads(r.stdout)["join_code"]
    who["token"] = course.bob
    r = runner.invoke(app, ["team", "join", code])
    assert r.exit_code == 0 and "joined" in r.stdout and "otters" in r.stdout
    assert DISPLAY_NAMES["alice"] in r.stdout and "alice" not in r.stdout.replace(DISPLAY_NAMES["alice"], "")
    r = runner.invoke(app, ["team", "show", "--task", "pets"])
    assert r.exit_code == 0 and code in r.stdout and "(you)" in r.stdout
    r = runner.invoke(app, ["team", "join", "A" * 22])
    assert r.exit_code == 2 and "team with that join code not found" in r.stderr
    r = runner.invoke(app, ["team", "leave", "--task", "pets"])
    assert r.exit_code == 0 and "left team otters" in r.stdout
    r = runner.invoke(app, ["team", "leave", "--task", "pets"])
    assert r.exit_code == 2 and "not found" in r.stderr
    r = runner.invoke(app, ["team", "show", "--task", "pets"])
    assert r.exit_code == 0 and "you submit alone" in r.stdout


@pytest.mark.parametrize("login", ["\x00", "bob\x00", "\u202ebob", "b" * 101, ""])
def test_hostile_login_names_in_staff_changes_are_refused(any_course, login):
    course = any_course
    _team_task(course)
    team = _create(course, course.instructor, "herons").json()
    r = _create(course, course.instructor, "badgers", members=[login])
    assert r.status_code == 422 and r.json()["detail"].startswith("members: "), r.text
    for body in ({"add": [login]}, {"remove": [login]}):
        r = course.client.patch(f"/api/v1/teams/{team['id']}", json=body, headers=auth(course.instructor))
        assert r.status_code == 422, r.text
    teams = course.client.get("/api/v1/tasks/pets/teams", headers=auth(course.instructor)).json()
    assert [(t["name"], t["members"]) for t in teams] == [("herons", [])]


# --- joining carries submissions into the team: the team's limits hold --------------------------

def test_joining_a_team_after_both_used_the_days_quota_alone_gives_the_team_twice_the_limit(any_course):
    """Found by review (medium): A team shares the daily limit, and a member may not leave after a scored
    submission; but joining has no such rule (services/teams.py join_team checks only the seat
    count). With daily_limit 1 and team_size 2, alice and bob each submit once alone, then bob
    joins alice's team: the team now holds 2 submissions of the day and its one board row is the
    best of both. Repeated every day until the deadline (join on the last day), a pair gets
    twice the team quota all term. Right: refuse a join that would put the team past the day's
    limit (or that brings scored submissions into a team), naming why."""
    course = any_course
    _team_task(course, daily_limit=1)
    code = _create(course, course.alice).json()["join_code"]
    _scored(course, course.alice, 0.5, 1)
    _scored(course, course.bob, 0.9, 2)        # bob alone: his own quota

    r = _join(course, course.bob, code)

    assert r.status_code == 409 and r.json()["code"] == "team_daily_limit", r.text
    assert r.json()["detail"] == ("team 'otters' would have 2 of 1 submissions for 'pets' today (UTC; a team "
                                  "shares the daily limit): join tomorrow")
    mine = course.client.get("/api/v1/tasks/pets/team", headers=auth(course.bob)).json()
    assert mine["team"] is None
    rows = course.client.get("/api/v1/tasks/pets/leaderboard", headers=auth(course.alice)).json()["rows"]
    assert sorted((x["user"], x["entries"]) for x in rows) == [(DISPLAY_NAMES["bob"], 1), ("otters", 1)]
    # staff cannot move bob in today either; a team with one submission left can take him
    r = course.client.patch(f"/api/v1/teams/{_team_id(course)}", json={"add": ["bob"]},
                            headers=auth(course.instructor))
    assert r.status_code == 409 and "make this change tomorrow (staff cannot override it)" in r.json()["detail"]
    course.client.patch("/api/v1/tasks/pets", json={"daily_limit": 2}, headers=auth(course.instructor))
    assert _join(course, course.bob, code).status_code == 200


def _team_id(course) -> int:
    return course.client.get("/api/v1/tasks/pets/team", headers=auth(course.alice)).json()["team"]["id"]


def test_joining_a_team_cannot_carry_a_second_final_choice_into_it(course):
    """Found by review (medium), same root as the quota one: With final_rule 'selected' and final_count 1 a
    team makes one final choice; but join_team does not look at the joiner's marks, so alice
    and bob each mark one submission final alone, bob joins, and the team holds two final
    marks: the grade (leaderboard._graded) takes the better private score of both, a second
    guess no single student or proper team gets. Right: the join is refused until the joiner's
    marks fit the team's final_count (or the joiner's marks are cleared, saying so)."""
    _team_task(course, daily_limit=None)
    r = course.client.patch("/api/v1/tasks/pets", json={"final_rule": "selected", "final_count": 1},
                            headers=auth(course.instructor))
    assert r.status_code == 200, r.text
    code = _create(course, course.alice).json()["join_code"]
    bob_sub = {}
    for token, seed in ((course.alice, 1), (course.bob, 2)):
        sub = _scored(course, token, 0.6, seed)
        assert course.client.post(f"/api/v1/submissions/{sub['id']}/select", headers=auth(token)).status_code == 200
        bob_sub = sub

    joined = _join(course, course.bob, code)

    assert joined.status_code == 409 and joined.json()["code"] == "too_many_selected", joined.text
    assert joined.json()["detail"] == ("team 'otters' would have 2 final submissions of 1 for 'pets' (a team makes "
                                       "one choice): unselect 1 of your final submissions first")
    assert course.client.post(f"/api/v1/submissions/{bob_sub['id']}/select", json={"selected": False},
                              headers=auth(course.bob)).status_code == 200
    assert _join(course, course.bob, code).status_code == 200
    history = course.client.get("/api/v1/me/submissions", params={"task": "pets"},
                                headers=auth(course.alice)).json()["submissions"]
    assert len([h["id"] for h in history if h["selected"]]) == 1


def test_a_student_cannot_take_a_teams_name_as_display_name(course):
    """Found by review (low-medium): A team name may not equal a course member's display name (teams.py
    check_team_name), but the reverse is not checked: set_display_name (services/members.py) lets a
    student take the exact name of an existing team, so two rows named 'otters' stand on the
    board (one the team, one a solo student passing for it) and the team's members cannot tell
    which is theirs from the name. Right: 409 display_name_taken, as for a classmate's name."""
    _team_task(course)
    assert _create(course, course.alice, "otters").status_code == 201

    r = course.client.put("/api/v1/courses/default/me/display-name", json={"display_name": "Otters"},
                          headers=auth(course.bob))

    assert r.status_code == 409, r.text
    assert r.json()["code"] == "display_name_taken" and "alice" not in r.text
    r = course.client.put("/api/v1/courses/default/me/display-name", json={"display_name": "\uff4ftters"},
                          headers=auth(course.alice))   # fullwidth, and the team's own member too
    assert r.status_code == 409, r.text
