"""API behaviour on the embedded stack: auth, access checks, boards, history, course rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from grader_api.models import Submission, SubmissionStatus
from tests.service.helpers import auth, predictions_csv, race_for_the_last_submission, upload, wait_for_status


def _submit(course, token, accuracy, note=None, seed=1):
    r = upload(course.client, token, "pets", predictions_csv(course.labels, accuracy, seed=seed), note=note)
    assert r.status_code == 202, r.text
    return wait_for_status(course.client, token, r.json()["id"])


def _patch(course, **body):
    r = course.client.patch("/api/v1/tasks/pets", json=body, headers=auth(course.instructor))
    assert r.status_code == 200, r.text
    return r.json()


def test_auth_errors_use_the_envelope(course):
    c = course.client
    assert c.get("/api/v1/me").json()["code"] == "unauthorized"
    r = c.get("/api/v1/me", headers=auth("nope"))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert c.get("/api/v1/me", headers=auth(course.alice)).json()["name"] == "alice"
    r = c.post("/api/v1/users", json={"name": "eve", "role": "instructor"}, headers=auth(course.alice))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = c.get("/api/v1/tasks/pets/grades.csv", headers=auth(course.alice))
    assert r.status_code == 403


def test_created_user_token_works_and_revocation_ends_it(course):
    c = course.client
    r = c.post("/api/v1/users", json={"name": "carol", "role": "student"}, headers=auth(course.instructor))
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert c.get("/api/v1/me", headers=auth(token)).json()["role"] == "student"
    assert c.post("/api/v1/users/carol/revoke", headers=auth(course.instructor)).json()["revoked"] == 1
    assert c.get("/api/v1/me", headers=auth(token)).status_code == 401
    assert c.post("/api/v1/users", json={"name": "carol"}, headers=auth(course.instructor)).status_code == 409
    r = c.post("/api/v1/users", json={"name": "=cmd()"}, headers=auth(course.instructor))
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"


def test_other_students_submission_is_404_and_private_parts_hidden(course):
    sub = _submit(course, course.alice, 0.8)
    c = course.client
    r = c.get(f"/api/v1/submissions/{sub['id']}", headers=auth(course.bob))
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert c.get("/api/v1/submissions/999999", headers=auth(course.bob)).json() == r.json() | {
        "detail": "submission 999999 not found"}
    r = c.get("/api/v1/tasks/pets/leaderboard?board=private", headers=auth(course.alice))
    assert r.status_code == 403 and "private" in r.json()["detail"]
    r = c.get(f"/api/v1/me/submissions/diff?a={sub['id']}&b={sub['id']}&part=private", headers=auth(course.alice))
    assert r.status_code == 403
    board = c.get("/api/v1/tasks/pets/leaderboard?board=private", headers=auth(course.instructor))
    row = board.json()["rows"][0]
    assert board.status_code == 200 and (row["user"], row["display_name"]) == ("alice", "quiet-otter-11")


def test_history_with_changes_and_per_class_diff(course):
    a = _submit(course, course.alice, 0.5, note="baseline", seed=2)
    b = _submit(course, course.alice, 0.9, note="+BatchNorm", seed=3)
    hist = course.client.get("/api/v1/me/submissions?task=pets", headers=auth(course.alice)).json()
    rows = hist["submissions"]
    assert [r["note"] for r in rows] == ["baseline", "+BatchNorm"]
    assert rows[0]["change"] is None
    assert rows[1]["change"] == pytest.approx(b["public_score"] - a["public_score"])
    d = course.client.get(f"/api/v1/me/submissions/diff?a={a['id']}&b={b['id']}", headers=auth(course.alice)).json()
    assert d["primary"]["delta"] == pytest.approx(b["public_score"] - a["public_score"])
    assert d["per_class"] == {}  # withheld on the public part (D9); tests/service/test_public_feedback.py
    # bob cannot diff alice's submissions
    r = course.client.get(f"/api/v1/me/submissions/diff?a={a['id']}&b={b['id']}", headers=auth(course.bob))
    assert r.status_code == 404


def test_leaderboard_ranks_best_per_student_ties_to_the_earlier(course):
    first = _submit(course, course.bob, 0.7, seed=5)
    _submit(course, course.alice, 0.7, seed=5)   # same file content: same score, later
    _submit(course, course.alice, 0.3, seed=6)
    rows = course.client.get("/api/v1/tasks/pets/leaderboard", headers=auth(course.alice)).json()["rows"]
    # students see each other by display name only (tests/service/helpers.py DISPLAY_NAMES)
    assert [(r["rank"], r["user"], r["entries"]) for r in rows] == [(1, "brave-lynx-22", 1), (2, "quiet-otter-11", 2)]
    assert all(r["real_name"] is None for r in rows)
    assert rows[0]["score"] == rows[1]["score"]
    assert rows[0]["submission_id"] is None and rows[1]["is_me"]  # alice sees her own id only
    assert datetime.fromisoformat(rows[0]["submitted_at"]) == datetime.fromisoformat(first["created_at"])


def test_daily_limit_counts_only_non_failed_submissions(course):
    _patch(course, daily_limit=2)
    _submit(course, course.alice, 0.5, seed=1)
    _submit(course, course.alice, 0.6, seed=2)
    r = upload(course.client, course.alice, "pets", predictions_csv(course.labels, 0.7))
    assert r.status_code == 429 and r.json()["code"] == "daily_limit" and "2 of 2" in r.json()["detail"]
    tasks = course.client.get("/api/v1/tasks", headers=auth(course.alice)).json()
    assert tasks[0]["submissions_left_today"] == 0
    # A failed submission gives its slot back.
    with course.app.state.db.transaction() as s:
        s.execute(sa.update(Submission).where(Submission.id == s.scalar(sa.select(sa.func.min(Submission.id))))
                  .values(status=SubmissionStatus.FAILED, error="x"))
    assert upload(course.client, course.alice, "pets", predictions_csv(course.labels, 0.7)).status_code == 202
    # bob has his own budget
    assert upload(course.client, course.bob, "pets", predictions_csv(course.labels, 0.7)).status_code == 202


def test_two_parallel_uploads_cannot_both_take_the_last_submission_of_the_day(course, monkeypatch):
    _patch(course, daily_limit=1)
    assert race_for_the_last_submission(course.client, course.alice, "pets", course.labels, monkeypatch) == [202, 429]
    with course.app.state.db.transaction() as s:
        assert s.scalar(sa.select(sa.func.count(Submission.id))) == 1


def test_deadline_late_days_and_private_reveal(course):
    sub = _submit(course, course.alice, 0.8)
    now = datetime.now(UTC)
    _patch(course, deadline=(now - timedelta(hours=30)).isoformat(), late_days=2)
    late = upload(course.client, course.alice, "pets", predictions_csv(course.labels, 0.6)).json()
    assert late["late"] is True and late["late_days_used"] == 2
    assert course.client.get("/api/v1/tasks/pets/leaderboard?board=private",
                             headers=auth(course.alice)).status_code == 403  # still open (late days)

    _patch(course, deadline=(now - timedelta(days=1)).isoformat(), late_days=0)
    r = upload(course.client, course.alice, "pets", predictions_csv(course.labels, 0.6))
    assert r.status_code == 403 and r.json()["code"] == "task_closed"
    wait_for_status(course.client, course.alice, late["id"])
    view = course.client.get(f"/api/v1/submissions/{sub['id']}", headers=auth(course.alice)).json()
    assert view["private_score"] is not None and view["private"]["n"] > 0
    board = course.client.get("/api/v1/tasks/pets/leaderboard?board=private", headers=auth(course.bob))
    assert board.status_code == 200 and board.json()["rows"][0]["user"] == "quiet-otter-11"


def test_final_rule_selected_drives_private_board_and_grades(course):
    good = _submit(course, course.alice, 0.9, seed=1)
    weak = _submit(course, course.alice, 0.4, seed=2)
    _patch(course, final_rule="selected", final_count=1)
    r = course.client.post(f"/api/v1/submissions/{weak['id']}/select", headers=auth(course.alice))
    assert r.status_code == 200 and r.json()["selected"]
    r = course.client.post(f"/api/v1/submissions/{good['id']}/select", headers=auth(course.alice))
    assert r.status_code == 409 and r.json()["code"] == "too_many_selected"
    assert course.client.post(f"/api/v1/submissions/{weak['id']}/select", headers=auth(course.bob)).status_code == 404
    prof = course.client.get(f"/api/v1/submissions/{weak['id']}", headers=auth(course.instructor)).json()
    row = course.client.get("/api/v1/tasks/pets/leaderboard?board=private",
                            headers=auth(course.instructor)).json()["rows"][0]
    assert row["score"] == pytest.approx(prof["private_score"])
    csv_text = course.client.get("/api/v1/tasks/pets/grades.csv", headers=auth(course.instructor)).text
    lines = csv_text.strip().splitlines()
    assert lines[0] == "student,best_public,best_private,points,late_days_used,submissions"
    alice = dict(zip(lines[0].split(","), [line for line in lines if line.startswith("alice,")][0].split(",")))
    assert float(alice["best_private"]) == pytest.approx(prof["private_score"], abs=1e-6)
    assert float(alice["best_public"]) == pytest.approx(good["public_score"], abs=1e-6)
    assert [line.split(",")[0] for line in lines[1:]] == ["alice", "bob"] and lines[2].endswith(",,,0,0")


def test_task_create_errors(course):
    c, h = course.client, auth(course.instructor)
    from tests.service.helpers import task_yaml

    r = c.post("/api/v1/tasks", json={"yaml": task_yaml()}, headers=h)
    assert r.status_code == 409
    r = c.post("/api/v1/tasks", json={"yaml": task_yaml("other", split="../../etc")}, headers=h)
    assert r.status_code == 422 and r.json()["code"] == "invalid_split"
    r = c.post("/api/v1/tasks", json={"yaml": task_yaml("other", split="missing/dir")}, headers=h)
    assert r.status_code == 422 and "no such directory" in r.json()["detail"]
    r = c.post("/api/v1/tasks", content="name: [unclosed", headers={**h, "Content-Type": "application/yaml"})
    assert r.status_code == 422 and r.json()["line"] == 1
    r = c.post("/api/v1/tasks", json={"yaml": task_yaml("other", extra="colour: red\n")}, headers=h)
    assert r.status_code == 422 and "colour" in r.json()["detail"]


def test_validation_errors_and_unexpected_errors_use_the_envelope(tmp_path):
    from fastapi.testclient import TestClient

    from grader_api.app import create_app
    from tests.service.conftest import embedded_settings

    app = create_app(embedded_settings(tmp_path))

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom")
        assert r.status_code == 500 and r.json() == {
            "detail": "internal server error; the problem has been logged", "code": "internal",
            "line": None, "column": None}
        r = c.get("/api/v1/nothing-here")
        assert r.status_code == 404 and r.json()["code"] == "not_found"
        assert c.get("/api/v1/openapi.json").json()["paths"]["/api/v1/tasks/{task}/submissions"]


def test_rate_limit_per_user(tmp_path):
    from fastapi.testclient import TestClient

    from grader_api.app import create_app
    from tests.service.conftest import embedded_settings, seed_users

    app = create_app(embedded_settings(tmp_path, rate_limit="3/minute"))
    with TestClient(app) as c:
        tokens = seed_users(app)
        codes = [c.get("/api/v1/me", headers=auth(tokens["alice"])).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert c.get("/api/v1/me", headers=auth(tokens["bob"])).status_code == 200
