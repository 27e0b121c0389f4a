"""Final selection (rule `selected`): fixed once the task closes, and never more than
`final_count` at once, also under parallel calls; on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import sqlalchemy as sa

from grader_api.models import Submission
from scoring.splits import public_mask, read_meta
from tests.service.helpers import CLASSES, auth, ids_for, predictions_csv, race_to_select, upload, wait_for_status


def _submit(course, content: bytes) -> dict:
    r = upload(course.client, course.alice, "pets", content)
    assert r.status_code == 202, r.text
    sub = wait_for_status(course.client, course.alice, r.json()["id"])
    assert sub["status"] == "scored", sub
    return sub


def _right_only_on(course, public: bool) -> bytes:
    """Predictions right on one part of the split (public or private) and wrong on the other."""
    labels = course.labels
    mask = public_mask(ids_for(len(labels)), 0.5, read_meta(course.settings.effective_data_root / "pets/test")["seed"])
    right = mask if public else ~mask
    pred = np.where(right, labels, (labels + 1) % len(CLASSES))
    rows = [f"{i},{CLASSES[p]}" for i, p in zip(ids_for(len(labels)), pred, strict=True)]
    return "\n".join(["id,label", *rows, ""]).encode()


def _patch(course, **body):
    r = course.client.patch("/api/v1/tasks/pets", json=body, headers=auth(course.instructor))
    assert r.status_code == 200, r.text
    return r.json()


def _select(course, sid: int, selected: bool = True):
    return course.client.post(f"/api/v1/submissions/{sid}/select", json={"selected": selected},
                              headers=auth(course.alice))


def _alice_grade(course) -> dict:
    r = course.client.get("/api/v1/tasks/pets/grades.csv", headers=auth(course.instructor))
    assert r.status_code == 200, r.text
    header, *rows = r.text.strip().splitlines()
    return dict(zip(header.split(","), next(x for x in rows if x.startswith("alice,")).split(","), strict=True))


def _selected_ids(course) -> set[int]:
    with course.app.state.db.transaction() as s:
        return set(s.scalars(sa.select(Submission.id).where(Submission.selected.is_(True))))


def test_selection_cannot_change_after_the_task_closes_and_the_grade_keeps_the_choice(any_course):
    course = any_course
    a = _submit(course, _right_only_on(course, public=True))
    b = _submit(course, _right_only_on(course, public=False))
    assert (a["public_score"], b["public_score"]) == (1.0, 0.0)
    _patch(course, final_rule="selected", final_count=1)
    assert _select(course, a["id"]).status_code == 200

    deadline = datetime.now(UTC) - timedelta(minutes=5)
    closes = _patch(course, deadline=deadline.isoformat(), late_days=0)["closes_at"]
    private = {s["id"]: s["private_score"]
               for s in course.client.get("/api/v1/me/submissions", params={"task": "pets"},
                                          headers=auth(course.alice)).json()["submissions"]}
    assert private == {a["id"]: 0.0, b["id"]: 1.0}  # revealed: the student now knows B is better

    for sid, selected in ((a["id"], False), (b["id"], True)):
        r = _select(course, sid, selected)
        assert r.status_code == 409, r.text
        body = r.json()
        assert body["code"] == "selection_closed"
        assert datetime.fromisoformat(closes).isoformat() in body["detail"]
        assert "+00:00" in body["detail"]  # the close time carries its zone
    assert _selected_ids(course) == {a["id"]}
    assert float(_alice_grade(course)["best_private"]) == 0.0
    board = course.client.get("/api/v1/tasks/pets/leaderboard?board=private", headers=auth(course.bob)).json()
    assert board["rows"][0]["score"] == 0.0


def test_selection_is_open_during_late_days(course):
    sub = _submit(course, predictions_csv(course.labels, 0.7))
    _patch(course, final_rule="selected", final_count=1,
           deadline=(datetime.now(UTC) - timedelta(hours=1)).isoformat(), late_days=1)
    assert _select(course, sub["id"]).status_code == 200
    assert _select(course, sub["id"], False).status_code == 200


def test_grades_ignore_a_selection_dated_after_the_close(course):
    """A mark set after the close by a path other than the API check (a deadline moved earlier,
    a row written directly) does not count: the grade falls back to the best public score."""
    a = _submit(course, _right_only_on(course, public=True))
    b = _submit(course, _right_only_on(course, public=False))
    _patch(course, final_rule="selected", final_count=1)
    assert _select(course, b["id"]).status_code == 200
    assert float(_alice_grade(course)["best_private"]) == 1.0  # open task: the mark counts

    _patch(course, deadline=(datetime.now(UTC) - timedelta(hours=1)).isoformat(), late_days=0)
    assert _selected_ids(course) == {b["id"]}
    assert float(_alice_grade(course)["best_private"]) == 0.0  # A: the best public score

    with course.app.state.db.transaction() as s:  # a mark from before selection times were kept
        s.execute(sa.update(Submission).where(Submission.id == b["id"]).values(selected_at=None))
    assert float(_alice_grade(course)["best_private"]) == 1.0
    assert a["public_score"] == 1.0


def test_parallel_selects_leave_exactly_final_count_selected(any_course, monkeypatch):
    course = any_course
    subs = [_submit(course, predictions_csv(course.labels, 0.6, seed)) for seed in (21, 22, 23, 24)]
    _patch(course, final_rule="selected", final_count=1)
    codes = race_to_select(course.client, course.alice, [s["id"] for s in subs], monkeypatch)
    assert codes == [200, 409, 409, 409]
    assert len(_selected_ids(course)) == 1


def test_selecting_records_when(course):
    sub = _submit(course, predictions_csv(course.labels, 0.6))
    before = datetime.now(UTC)
    assert _select(course, sub["id"]).status_code == 200
    with course.app.state.db.transaction() as s:
        selected_at = s.get(Submission, sub["id"]).selected_at
    assert before <= selected_at <= datetime.now(UTC)
