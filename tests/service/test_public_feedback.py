"""What the API shows of the public part (issue 16, D9): the score, no per-class breakdown unless
the task sets `public_detail`, also for reports stored before the breakdown was withheld."""

from __future__ import annotations

import numpy as np
import pytest

from grader_api.models import Submission
from tests.service.helpers import CLASSES, auth, ids_for, predictions_csv, task_yaml, upload, wait_for_status


def _submit(course, task: str, content: bytes, note: str | None = None) -> dict:
    r = upload(course.client, course.alice, task, content, note=note)
    assert r.status_code == 202, r.text
    return wait_for_status(course.client, course.alice, r.json()["id"])


def _chosen_ids_attack(n: int) -> bytes:
    """Classes 1..3 for three chosen ids (this task has four classes), class 0 elsewhere."""
    pred = np.zeros(n, dtype=np.int64)
    pred[[5, 50, 150]] = [1, 2, 3]
    return ("id,label\n" + "".join(f"{i},{CLASSES[p]}\n" for i, p in zip(ids_for(n), pred, strict=True))).encode()


def test_student_sees_the_public_score_without_per_class_detail(course):
    sub = _submit(course, "pets", _chosen_ids_attack(len(course.labels)))
    public = sub["public"]
    assert sub["status"] == "scored" and public["primary"] == sub["public_score"] is not None
    assert public["per_class"] is None and public["confusion"] is None and public["most_confused"] is None
    assert "would reveal which test items are public" in public["withheld"]
    prof = course.client.get(f"/api/v1/submissions/{sub['id']}", headers=auth(course.instructor)).json()
    assert prof["overall"]["confusion"]["matrix"] and prof["private"]["per_class"]  # staff keep the detail


def test_diff_of_public_parts_has_no_per_class_rows(course):
    a = _submit(course, "pets", predictions_csv(course.labels, 0.5, seed=2))
    b = _submit(course, "pets", _chosen_ids_attack(len(course.labels)))
    d = course.client.get(f"/api/v1/me/submissions/diff?a={a['id']}&b={b['id']}", headers=auth(course.alice)).json()
    assert d["per_class"] == {} and d["withheld"]
    assert d["primary"]["delta"] == pytest.approx(b["public_score"] - a["public_score"])


def test_reports_stored_with_public_detail_are_shown_without_it(course):
    sub = _submit(course, "pets", _chosen_ids_attack(len(course.labels)))
    with course.app.state.db.transaction() as s:  # as scored before the detail was withheld
        row = s.get(Submission, sub["id"])
        public = dict(row.report["parts"]["public"])
        public.update(per_class={c: {"accuracy": 0.5} for c in CLASSES},
                      confusion={"classes": list(CLASSES), "matrix": [[1] * 4] * 4},
                      most_confused=[{"true": "cat", "predicted": "dog", "count": 1, "rate": 0.1}])
        public.pop("withheld")
        row.report = {**row.report, "parts": {**row.report["parts"], "public": public}}
    again = course.client.get(f"/api/v1/submissions/{sub['id']}", headers=auth(course.alice)).json()["public"]
    assert again["per_class"] is None and again["confusion"] is None and again["most_confused"] is None
    assert again["withheld"] and again["primary"] == sub["public_score"]


def test_a_task_can_show_public_detail(course):
    r = course.client.post("/api/v1/tasks", content=task_yaml("pets-detail", extra="public_detail: true\n"),
                           headers={**auth(course.instructor), "Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    a = _submit(course, "pets-detail", predictions_csv(course.labels, 0.5, seed=2))
    b = _submit(course, "pets-detail", predictions_csv(course.labels, 0.9, seed=3))
    assert b["public"]["withheld"] is None and set(b["public"]["per_class"]) == set(CLASSES)
    d = course.client.get(f"/api/v1/me/submissions/diff?a={a['id']}&b={b['id']}", headers=auth(course.alice)).json()
    cat = d["per_class"]["cat"]["accuracy"]
    assert cat["a"] == a["public"]["per_class"]["cat"]["accuracy"]
    assert cat["delta"] == pytest.approx(cat["b"] - cat["a"]) and d["withheld"] is None
